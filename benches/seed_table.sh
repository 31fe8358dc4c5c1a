#!/usr/bin/env bash
# The seed's performance table, measured side by side in one run (benches/seed_table.rs): JSON
# parsing, regex match, rule evaluation, HTTP request and LLM call through native, WASM and Rhai
# plugins and in pure Python, plus WASM startup and compute. Writes results.json, table.md and
# chart.svg under target/seed_table/ and copies them to benches/results/ (what
# docs/benchmarks.md quotes). Needs python3 (stdlib only); clang and lld for the C WASM guests
# (without them those entries are skipped with a note).
#
#   bash benches/seed_table.sh                              # criterion warm-up 1 s, measurement 3 s
#   WARM_UP=3 MEASUREMENT=5 bash benches/seed_table.sh      # criterion's defaults
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench seed_table -- \
  --warm-up-time "${WARM_UP:-1}" --measurement-time "${MEASUREMENT:-3}" "$@"
out="${CARGO_TARGET_DIR:-target}/seed_table"
mkdir -p benches/results
cp "$out/results.json" "$out/table.md" "$out/chart.svg" benches/results/
if command -v rsvg-convert >/dev/null 2>&1; then
  rsvg-convert -o benches/results/chart.png benches/results/chart.svg
fi
echo "seed_table.sh: copied to benches/results/"
