#!/usr/bin/env bash
# Runs every test of rust-farm on a fresh machine: installs what is missing,
# then checks formatting and lints, builds every binary and runs the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Prometheus and Alertmanager (Debian package names) run in the alert-path
# test (gateway-ext/tests/alert_path.rs).
bash scripts/setup.sh prometheus prometheus-alertmanager fonts-dejavu-core
export PATH="$root/.venv/bin:$PATH"
export NATS_SERVER="$root/.venv/bin/nats-server"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (binaries used by process tests)"
cargo build --workspace --bins
echo "== cargo test"
cargo test --workspace --no-fail-fast
echo "== gym: ruff + pytest (Python Gymnasium layer; uses target/debug/farmctl)"
"$root/.venv/bin/python" -m ruff check "$root/gym"
# pytest exits 5 when it collects no test: that is a failure here, like any
# other non-zero status (set -e).
(cd "$root/gym" && FARMCTL="$root/target/debug/farmctl" \
  "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider)
