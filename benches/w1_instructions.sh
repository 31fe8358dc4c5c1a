#!/usr/bin/env bash
# Instructions per W1 order, counted by valgrind (cachegrind), for A/B comparisons of builds
# on machines too noisy for wall-clock ones: on this project's shared 2-core VMs the same
# binary's orders/s swings by 1.5-2x between back-to-back runs, while its instruction count
# repeats to within 0.1%. Each figure is the slope between N = 10 000 and N = 30 000 orders on a
# current-thread runtime, so the fixed costs (building the system, the warm-up) drop out; it
# still includes building and copying each order before the clock starts (~3 800 instructions
# an order, the same in every build). Instructions are not time (a cache miss costs no
# instruction), so confirm a change that matters with benches/w1_rounds.sh.
#
#   bash benches/w1_instructions.sh                      # target/dist/examples/w1
#   bash benches/w1_instructions.sh /tmp/w1_a /tmp/w1_b  # copies of two builds, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
if [ $# -eq 0 ]; then
  cargo build --profile dist --example w1 >/dev/null 2>&1
  set -- target/dist/examples/w1
fi
instructions() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
    awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}
for agents in native rhai; do
  for binary in "$@"; do
    small=$(instructions "$binary" --mode throughput --n 10000 --agents "$agents" --runtime current)
    large=$(instructions "$binary" --mode throughput --n 30000 --agents "$agents" --runtime current)
    echo "$binary agents=$agents instructions_per_order=$(( (large - small) / 20000 ))"
  done
done
