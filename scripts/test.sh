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

need_node
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
