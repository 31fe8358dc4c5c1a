#!/usr/bin/env bash
# Durable runs (issue 24) side by side, in one run on one machine: W1 "order routing" through the
# user's path, `bilayer run examples/orders/system.toml --input ORDERS.jsonl` (Rhai agents, the
# whole process, outcome lines to a file), without a store, with an SQLite store (the default
# durability, and `power_loss_safe = true`), and with a PostgreSQL store; against LangGraph with
# its durable checkpointers (../shared/peers/w1_langgraph_durable.py: SqliteSaver, PostgresSaver)
# when PEERS_PY names a Python with ../shared/peers/requirements.txt installed.
#
# Prints one RESULT line per configuration in the peers' format, plus what this script measures:
#   orders_per_s  bilayer: from the summary ("N inputs in X s": first input read to last
#                 outcome written); process_s: the whole process's wall time;
#   ratio         durable throughput / non-durable throughput of the same run;
#   bytes_per_hop the SQLite store's size once checkpointed, divided by its hop rows (runs,
#                 outcomes and indexes included), and rows per run.
# Every bilayer run is checked (N outcome lines, shipped/rejected counts of w1_common.expected);
# a mismatch stops the script with status 1.
#
#   bash benches/durable_compare.sh                                  # bilayer only
#   PEERS_PY=/path/venv/bin/python bash benches/durable_compare.sh   # and LangGraph
#   DURABLE_N=20000 LANGGRAPH_N=1000 bash benches/durable_compare.sh
#   BILAYER_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432 bash benches/durable_compare.sh
# PostgreSQL: a database `bilayer_bench_<pid>` is created on that server for each store and
# dropped after (the user must be allowed to create databases). bilayer is built with
# `cargo build --profile dist` (BILAYER_BIN=path skips the build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/support/w1.sh
PY=${PEERS_PY:-}
N=${DURABLE_N:-100000}
LG_N=${LANGGRAPH_N:-2000}
PG=${BILAYER_BENCH_POSTGRES_URL:-}
tmp=$(mktemp -d)
pg_dbs=()
cleanup() {
  for db in "${pg_dbs[@]:-}"; do
    [ -n "$db" ] && psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

w1_orders "$N" "$tmp/orders.jsonl"
read -r SHIPPED REJECTED < <(w1_expected "$N")

# A copy of the example whose definition asks for fsync per commit.
cp -r examples/orders "$tmp/orders-fsync"
# [durability] must come before the [[agents]] tables: splice it after the top-level keys.
python3 - "$tmp/orders-fsync/system.toml" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
at = text.index("[limits]")
open(path, "w").write(text[:at] + "[durability]\npower_loss_safe = true\n\n" + text[at:])
PY

bilayer_run() { # label system store...
  local label=$1 system=$2 store=${3:-}
  local args=(run "$system" --input "$tmp/orders.jsonl")
  [ -n "$store" ] && args+=(--store "$store")
  local start end
  start=$(date +%s.%N)
  "$BIN" "${args[@]}" > "$tmp/out.jsonl" 2> "$tmp/err.txt" || { cat "$tmp/err.txt" >&2; fail "$label: bilayer run failed"; }
  end=$(date +%s.%N)
  local lines shipped rejected
  lines=$(wc -l < "$tmp/out.jsonl")
  shipped=$(grep -c '"agent":"fulfillment"' "$tmp/out.jsonl" || true)
  rejected=$(grep -c '"agent":"audit"' "$tmp/out.jsonl" || true)
  [ "$lines" = "$N" ] || fail "$label: $lines outcome lines for $N orders"
  [ "$shipped $rejected" = "$SHIPPED $REJECTED" ] || fail "$label: shipped/rejected $shipped/$rejected, expected $SHIPPED/$REJECTED"
  local rate seconds
  read -r seconds rate < <(sed -n 's/^[0-9]* inputs in \([0-9.]*\) s (\([0-9]*\) inputs\/s)$/\1 \2/p' "$tmp/err.txt")
  LAST_RATE=$rate
  echo "RESULT system=bilayer-$label mode=throughput n=$N seconds=$seconds orders_per_s=$rate process_s=$(echo "$end - $start" | bc) shipped=$shipped rejected=$rejected"
}

sqlite_bytes() { # db -> "bytes_per_hop rows_per_run"
  python3 - "$1" "$N" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
size = pages * db.execute("PRAGMA page_size").fetchone()[0]
hops = db.execute("SELECT COUNT(*) FROM bilayer_hops").fetchone()[0]
rows = sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("bilayer_runs", "bilayer_hops", "bilayer_calls", "bilayer_outcomes"))
print(f"{size / hops:.0f} {rows / int(sys.argv[2]):.2f}")
PY
}

bilayer_run none examples/orders/system.toml
BASE=$LAST_RATE
bilayer_run sqlite examples/orders/system.toml "sqlite:$tmp/runs.db"
read -r BPH RPR < <(sqlite_bytes "$tmp/runs.db")
echo "RATIO system=bilayer-sqlite vs=bilayer-none ratio=$(echo "scale=3; $LAST_RATE / $BASE" | bc) bytes_per_hop=$BPH rows_per_run=$RPR"
bilayer_run sqlite-fsync "$tmp/orders-fsync/system.toml" "sqlite:$tmp/runs-fsync.db"
echo "RATIO system=bilayer-sqlite-fsync vs=bilayer-none ratio=$(echo "scale=3; $LAST_RATE / $BASE" | bc)"
if [ -n "$PG" ]; then
  db=bilayer_bench_$$
  pg_dbs+=("$db")
  psql "$PG/postgres" -qAtc "CREATE DATABASE $db" >/dev/null || fail "cannot create database $db on $PG"
  bilayer_run postgres examples/orders/system.toml "$PG/$db"
  echo "RATIO system=bilayer-postgres vs=bilayer-none ratio=$(echo "scale=3; $LAST_RATE / $BASE" | bc)"
fi
if [ -n "$PY" ]; then
  peer langgraph-sqlite "$PY" w1_langgraph_durable.py --mode throughput --n "$LG_N" --saver sqlite --db "$tmp/lg.db"
  if [ -n "$PG" ]; then
    db=bilayer_bench_lg_$$
    pg_dbs+=("$db")
    psql "$PG/postgres" -qAtc "CREATE DATABASE $db" >/dev/null || fail "cannot create database $db on $PG"
    peer langgraph-postgres "$PY" w1_langgraph_durable.py --mode throughput --n "$LG_N" --saver postgres --pg-url "$PG/$db"
  fi
fi
