#!/usr/bin/env bash
# W1 over NATS JetStream with 1, 2 and 3 `bilayer worker` processes, against the same system in
# process, in one run on this machine (NATS on 127.0.0.1:4222, or $BILAYER_NATS_URL).
# Native agents, so the figures show the transport rather than the agents. Each line is the
# summary `bilayer run` prints; docs/benchmarks.md records them.
#
#   bash benches/nats_scale.sh            # N=100000 orders
#   N=20000 STORAGE=memory bash benches/nats_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
STORAGE=${STORAGE:-file}
URL=${BILAYER_NATS_URL:-nats://127.0.0.1:4222}
cargo build --profile dist --bin bilayer >/dev/null 2>&1
B=$PWD/target/dist/bilayer
tmp=$(mktemp -d)
trap 'pkill -TERM -f "$tmp/system.toml" 2>/dev/null || true; rm -rf "$tmp"' EXIT

python3 - "$N" >"$tmp/orders.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"order_id": f"ORD-{i}", "quantity": 1 + (i * 7919) % 20,
                      "price": 1.0 + ((i * 104729) % 20000) / 100.0}))
PY
cat >"$tmp/system.toml" <<TOML
name = "w1_bench"
entry = "intake"
max_in_flight = 16384

[transport]
kind = "nats"
url = "$URL"
storage = "$STORAGE"
results_max_age_ms = 300000

[[agents]]
name = "intake"
native = "order_intake"

[[agents]]
name = "manager"
native = "order_manager"

[[agents]]
name = "fulfillment"
native = "order_fulfillment"

[[agents]]
name = "audit"
native = "order_audit"
TOML

summary() { grep -E "inputs in|latency" | tr '\n' ' '; echo; }
echo "W1, $N orders, native agents, storage=$STORAGE"
echo -n "in-process:  "
"$B" run "$tmp/system.toml" --transport in-process --input "$tmp/orders.jsonl" --quiet 2>&1 | summary
for workers in 1 2 3; do
  pids=()
  for _ in $(seq "$workers"); do
    "$B" worker "$tmp/system.toml" 2>"$tmp/worker.log" &
    pids+=($!)
  done
  for _ in $(seq 50); do
    [ "$(grep -c 'bilayer worker: serving' "$tmp/worker.log" 2>/dev/null || true)" -ge 1 ] && break
    sleep 0.1
  done
  sleep 0.5
  echo -n "nats, $workers worker(s): "
  "$B" run "$tmp/system.toml" --transport nats --input "$tmp/orders.jsonl" --quiet 2>&1 | summary
  kill -TERM "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
done
