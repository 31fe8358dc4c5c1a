#!/usr/bin/env bash
# W1 "order routing" side by side, in one run on one machine: bilayer (native and Rhai agents)
# against the Python peers of ../shared/peers (the asyncio floor always; autogen-core and
# LangGraph when PEERS_PY names a Python that has ../shared/peers/requirements.txt installed).
# Prints one RESULT line per configuration (the peers' format); docs/benchmarks.md records them.
# bilayer runs on a 2-worker multi-thread runtime ("multi") and on a current-thread runtime.
# bilayer is built in the production profile `dist` (fat LTO); PROFILES="dist release" runs
# both build profiles in the same run, each block headed by a `# profile NAME` line.
#
#   bash benches/w1_compare.sh                 # asyncio peer only
#   PEERS_PY=/path/venv/bin/python bash benches/w1_compare.sh
#   PROFILES="dist release" bash benches/w1_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS_DIR:-../shared/peers}
PY=${PEERS_PY:-}
PROFILES=${PROFILES:-dist}
TARGET=${CARGO_TARGET_DIR:-target}
for p in $PROFILES; do cargo build --profile "$p" --example w1 >/dev/null 2>&1; done
run() { "$@" 2>/dev/null | grep '^RESULT'; }
for n in 100000; do
  for p in $PROFILES; do
    echo "# profile $p"
    for rt in multi current; do
      run "$TARGET/$p/examples/w1" --mode throughput --n $n --agents native --runtime $rt
      run "$TARGET/$p/examples/w1" --mode throughput --n $n --agents rhai --runtime $rt
    done
  done
  run python3 "$PEERS/w1_asyncio.py" --mode throughput --n $n
  if [ -n "$PY" ]; then
    run "$PY" "$PEERS/w1_autogen.py" --mode throughput --n 10000
    run "$PY" "$PEERS/w1_langgraph.py" --mode throughput --n 10000
  fi
done
for p in $PROFILES; do
  echo "# profile $p"
  for rt in multi current; do
    run "$TARGET/$p/examples/w1" --mode latency --n 2000 --agents native --runtime $rt
    run "$TARGET/$p/examples/w1" --mode latency --n 2000 --agents rhai --runtime $rt
  done
done
run python3 "$PEERS/w1_asyncio.py" --mode latency --n 2000
if [ -n "$PY" ]; then
  run "$PY" "$PEERS/w1_autogen.py" --mode latency --n 2000
  run "$PY" "$PEERS/w1_langgraph.py" --mode latency --n 2000
fi
