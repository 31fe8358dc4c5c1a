#!/usr/bin/env bash
# W1 "order routing" through the user's path, side by side with the Python peers, in one run on
# one machine (issue 23): `bilayer run SYSTEM --input ORDERS.jsonl`, the whole process (start-up,
# JSONL parsing, one outcome line per order written to a file, exit), for the order pipeline
# with Rhai agents (examples/orders) and with the same four agents native (a copy of the
# definition naming `native = "order_intake"` ...), against ../shared/peers: the asyncio floor
# always, autogen-core and LangGraph when PEERS_PY names a Python with
# ../shared/peers/requirements.txt installed.
#
# Prints one RESULT line per configuration in the peers' format, plus:
#   process_s     bilayer: the whole command's wall time; orders_per_s is N / process_s (the
#                 user's figure); run_orders_per_s: the summary's, first input read to last
#                 outcome written (start-up and exit excluded);
#   latency       one order at a time (bilayer: max_in_flight = 1 in a copy of the definition;
#                 the summary's p50/p99, admission to outcome), the peers' --mode latency;
#   RATIO lines   bilayer against the asyncio floor and autogen-core, same run.
# Every bilayer run is checked (N outcome lines, shipped/rejected of w1_common.expected).
#
#   bash benches/w1_run_compare.sh                                  # bilayer and asyncio
#   PEERS_PY=/path/venv/bin/python bash benches/w1_run_compare.sh   # and autogen-core, LangGraph
#   W1_N=20000 bash benches/w1_run_compare.sh
# bilayer is built with `cargo build --profile dist` (BILAYER_BIN=path skips the build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/support/w1.sh
PY=${PEERS_PY:-}
N=${W1_N:-100000}
PEER_N=${W1_PEER_N:-10000} # autogen-core and LangGraph: ~3-5 k orders/s, 10 000 is enough
LAT_N=${W1_LATENCY_N:-2000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

w1_orders "$N" "$tmp/orders.jsonl"
w1_orders "$LAT_N" "$tmp/latency.jsonl"

# The definitions: Rhai (the example, copied), native (the same agents by name), and each with
# max_in_flight = 1 for the latency runs.
mkdir -p "$tmp/rhai" "$tmp/native"
cp examples/orders/*.rhai "$tmp/rhai/"
python3 - examples/orders/system.toml "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
out = sys.argv[2]
open(f"{out}/rhai/system.toml", "w").write(text)
native = re.sub(r'script = "(\w+)\.rhai"', lambda m: f'native = "order_{m.group(1)}"', text)
native = re.sub(r"(?ms)^\[limits\].*?(?=^\[\[agents\]\])", "", native)
open(f"{out}/native/system.toml", "w").write(native)
for kind, body in (("rhai", text), ("native", native)):
    one = body.replace("max_hops = 8", "max_hops = 8\nmax_in_flight = 1", 1)
    open(f"{out}/{kind}/one_at_a_time.toml", "w").write(one)
PY
read -r SHIPPED REJECTED < <(w1_expected "$N")

declare -A RATE
bilayer_run() { # kind
  local kind=$1 start end
  start=$(date +%s.%N)
  "$BIN" run "$tmp/$kind/system.toml" --input "$tmp/orders.jsonl" > "$tmp/out.jsonl" 2> "$tmp/err.txt" \
    || { cat "$tmp/err.txt" >&2; fail "$kind: bilayer run failed"; }
  end=$(date +%s.%N)
  local lines shipped rejected
  lines=$(wc -l < "$tmp/out.jsonl")
  shipped=$(grep -c '"agent":"fulfillment"' "$tmp/out.jsonl" || true)
  rejected=$(grep -c '"agent":"audit"' "$tmp/out.jsonl" || true)
  [ "$lines" = "$N" ] || fail "$kind: $lines outcome lines for $N orders"
  [ "$shipped $rejected" = "$SHIPPED $REJECTED" ] || fail "$kind: shipped/rejected $shipped/$rejected, expected $SHIPPED/$REJECTED"
  local process run_rate
  process=$(echo "$end - $start" | bc)
  run_rate=$(sed -n 's/^[0-9]* inputs in [0-9.]* s (\([0-9]*\) inputs\/s)$/\1/p' "$tmp/err.txt")
  RATE[$kind]=$(echo "scale=1; $N / $process" | bc)
  echo "RESULT system=bilayer-run-$kind mode=throughput n=$N seconds=$process orders_per_s=${RATE[$kind]} run_orders_per_s=$run_rate process_s=$process shipped=$shipped rejected=$rejected"
}
bilayer_latency() { # kind
  local kind=$1
  "$BIN" run "$tmp/$kind/one_at_a_time.toml" --input "$tmp/latency.jsonl" --quiet 2> "$tmp/err.txt" >/dev/null \
    || { cat "$tmp/err.txt" >&2; fail "$kind: bilayer run (latency) failed"; }
  local p50 p99
  read -r p50 p99 < <(sed -n 's/^latency: p50 \([0-9.]*\) µs, p99 \([0-9.]*\) µs.*$/\1 \2/p' "$tmp/err.txt")
  echo "RESULT system=bilayer-run-$kind mode=latency n=$LAT_N p50_us=$p50 p99_us=$p99"
}
rate_of() { sed -n 's/.*orders_per_s=\([0-9.]*\).*/\1/p' <<<"$1"; }

bilayer_run rhai
bilayer_run native
ASYNCIO=$(peer asyncio python3 w1_asyncio.py --mode throughput --n "$N")
echo "$ASYNCIO"
FLOOR=$(rate_of "$ASYNCIO")
for kind in rhai native; do
  echo "RATIO system=bilayer-run-$kind vs=asyncio ratio=$(echo "scale=3; ${RATE[$kind]} / $FLOOR" | bc)"
done
if [ -n "$PY" ]; then
  AUTOGEN=$(peer autogen-core "$PY" w1_autogen.py --mode throughput --n "$PEER_N")
  echo "$AUTOGEN"
  for kind in rhai native; do
    echo "RATIO system=bilayer-run-$kind vs=autogen-core ratio=$(echo "scale=1; ${RATE[$kind]} / $(rate_of "$AUTOGEN")" | bc)"
  done
  peer langgraph "$PY" w1_langgraph.py --mode throughput --n "$PEER_N"
fi
bilayer_latency rhai
bilayer_latency native
peer asyncio-latency python3 w1_asyncio.py --mode latency --n "$LAT_N"
