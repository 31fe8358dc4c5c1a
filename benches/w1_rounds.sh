#!/usr/bin/env bash
# W1 throughput in interleaved rounds: each round runs the asyncio peer, then bilayer with native
# and Rhai agents on 2 workers and on one thread, and prints each bilayer figure with its ratio
# to the asyncio run of the same round. For A/B comparisons on a noisy machine, where only
# ratios measured side by side mean anything (docs/benchmarks.md). With PEERS_PY naming a Python
# that has ../shared/peers/requirements.txt installed, each round also runs autogen-core (at
# N = 10 000, as w1_compare.sh does) and prints the Rhai figures' ratio to it.
#
#   ROUNDS=4 N=100000 bash benches/w1_rounds.sh
#   ROUNDS=4 PEERS_PY=/path/venv/bin/python bash benches/w1_rounds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${PEERS_DIR:-../shared/peers}
PY=${PEERS_PY:-}
ROUNDS=${ROUNDS:-3}
N=${N:-100000}
cargo build --profile dist --example w1 >/dev/null 2>&1
W1=target/dist/examples/w1
rate() { "$@" 2>/dev/null | grep '^RESULT' | grep -o 'orders_per_s=[0-9.]*' | cut -d= -f2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
for round in $(seq 1 "$ROUNDS"); do
  asyncio=$(rate python3 "$PEERS/w1_asyncio.py" --mode throughput --n "$N")
  autogen=""
  if [ -n "$PY" ]; then
    autogen=$(rate "$PY" "$PEERS/w1_autogen.py" --mode throughput --n 10000)
  fi
  line="round $round asyncio=$asyncio${autogen:+ autogen=$autogen}"
  for agents in native rhai; do
    for rt in multi current; do
      r=$(rate "$W1" --mode throughput --n "$N" --agents "$agents" --runtime "$rt")
      line="$line ${agents}_$rt=$r ($(ratio "$r" "$asyncio")x"
      if [ -n "$autogen" ] && [ "$agents" = rhai ]; then
        line="$line, $(ratio "$r" "$autogen")x autogen"
      fi
      line="$line)"
    done
  done
  echo "$line"
done
