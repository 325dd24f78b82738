#!/usr/bin/env bash
# The main job: a live farm on this machine. Replays the reference paper's
# `paper-4phase` workload compressed 4x on a local farm (real nats-server,
# real worker processes, the local OpenFaaS-compatible provider) with the
# shipped learned policy and with the strongest baseline, runs the same
# workload in the simulator, and prints both side by side.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh fonts-dejavu-core
export PATH="$root/.venv/bin:$PATH"
export NATS_SERVER="$root/.venv/bin/nats-server"

echo "== building release binaries"
cargo build --release --workspace --bins

scenario=${SCENARIO:-paper-4phase}
speedup=${SPEEDUP:-4}
policies=${POLICIES:-onnx:models/farm-policy.onnx,queueing}
out=${OUT:-out/demo}

echo "== $scenario at ${speedup}x, policies: $policies"
target/release/farmctl compare --scenario "$scenario" --speedup "$speedup" \
  --policies "$policies" --out "$out"

echo
echo "table and timelines: $root/$out/compare.json, $root/$out/compare.png"
