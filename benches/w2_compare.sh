#!/usr/bin/env bash
# W2 "LLM-bound triage" side by side, in one run on one machine: bilayer through the user's path
# (`bilayer run` of examples/w2, the whole process, outcomes to a file) against the Python peers
# of ../shared/peers (the hand-written asyncio floor always; LangGraph `abatch` and autogen-core
# when PEERS_PY names a Python with ../shared/peers/requirements.txt installed). Every system
# makes two model calls per ticket to the same loopback model server, started here:
# llm_server.py on a free port with W2_LATENCY_MS (default 50) per answer.
#
# Prints one RESULT line per system and mode, in the peers' format plus what this script
# measures around each process:
#   throughput: N tickets (W2_N, default 2000), W2_CONCURRENCY (default 64) in flight; for
#               bilayer `max_in_flight` in a generated copy of the definition, for the peers
#               their --concurrency. tickets_per_s over the timed part (bilayer: the summary's
#               "inputs in X s", from the first input read to the last outcome; the peers: after
#               their warm-up), pct_of_ceiling against C / (2 × latency);
#   latency:    200 tickets one at a time (bilayer: max_in_flight = 1), p50/p99 per ticket
#               (bilayer: the summary's, admission to outcome);
#   peak_concurrency: the most model calls the server held at once (llm_server.py's /stats);
#   process_s: the whole process's wall time (start-up, warm-up and exit included);
#   cpu_s: the process's user+sys CPU seconds (its rusage), the whole process: start-up,
#          imports, the peers' warm-up; calls: the model calls the process made (2 per ticket,
#          warm-up included); cpu_ms_per_call = cpu_s / calls; startup_cpu_s: the same
#          process on 1 ticket (no warm-up); net_cpu_ms_per_call = (cpu_s - startup_cpu_s) /
#          (calls - 2), the CPU a model call costs once the process runs.
# bilayer's outcomes are checked ticket by ticket (team and reply by the server's rule; counts
# equal w2_common.expected(N); the server answered exactly 2N calls): a mismatch stops the
# script with status 1. The peers check themselves and exit non-zero, which stops it too.
#
#   bash benches/w2_compare.sh                                   # bilayer and asyncio
#   PEERS_PY=/path/venv/bin/python bash benches/w2_compare.sh    # and LangGraph, autogen-core
#   W2_N=500 W2_SYSTEMS="bilayer asyncio" bash benches/w2_compare.sh
# The asyncio floor needs aiohttp (its model client): it runs on PEERS_PY when set, else on
# python3, which must then have aiohttp. A venv: python3 -m venv VENV &&
# VENV/bin/pip install -r ../shared/peers/requirements.txt (outside the repository).
# bilayer is built with `cargo build --profile dist` (BILAYER_BIN=path skips the build).
# PEERS_DIR: where the peers are, if not ../shared/peers (e.g. from a git worktree).
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=$(cd "${PEERS_DIR:-../shared/peers}" 2>/dev/null && pwd) \
  || { echo "w2_compare: no peers at ${PEERS_DIR:-../shared/peers}: set PEERS_DIR" >&2; exit 1; }
PY=${PEERS_PY:-}
ASYNCIO_PY=${PY:-python3}
N=${W2_N:-2000}
LAT_N=${W2_LATENCY_N:-200}
C=${W2_CONCURRENCY:-64}
LAT=${W2_LATENCY_MS:-50}
SYSTEMS=${W2_SYSTEMS:-bilayer asyncio langgraph autogen-core}
WARMUP=64 # the peers' default --warmup: tickets run before timing, C at a time
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

tmp=$(mktemp -d)
srv=
cleanup() {
  if [ -n "$srv" ]; then kill "$srv" 2>/dev/null || true; wait "$srv" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "w2_compare: $*" >&2; exit 1; }

if [ -n "${BILAYER_BIN:-}" ]; then
  BIN=$BILAYER_BIN
else
  cargo build --profile dist --bin bilayer > "$tmp/build.log" 2>&1 \
    || { tail -20 "$tmp/build.log" >&2; fail "cargo build --profile dist failed"; }
  BIN=${CARGO_TARGET_DIR:-target}/dist/bilayer
fi
[ -x "$BIN" ] || fail "no bilayer binary at $BIN"
has() { [[ " $SYSTEMS " == *" $1 "* ]]; }
! has asyncio || "$ASYNCIO_PY" -c 'import aiohttp' 2>/dev/null \
  || fail "$ASYNCIO_PY has no aiohttp (the peers' model client): set PEERS_PY to a venv's python with $PEERS/requirements.txt installed"

# The model server, on a free loopback port.
python3 "$PEERS/llm_server.py" --port 0 --port-file "$tmp/port" --latency-ms "$LAT" 2> "$tmp/server.err" &
srv=$!
for _ in $(seq 1 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "llm_server.py did not start: $(cat "$tmp/server.err")"
URL="http://127.0.0.1:$(tr -d '[:space:]' < "$tmp/port")/v1"
stats() { python3 -c "import sys; sys.path.insert(0, '$PEERS'); import w2_common as w, json; print(json.dumps(w.server_$1('$URL')))"; }

# The same tickets as the peers', as bilayer's input.
python3 "$PEERS/w2_common.py" tickets "$N" > "$tmp/tickets.jsonl"
python3 "$PEERS/w2_common.py" tickets "$LAT_N" > "$tmp/tickets_latency.jsonl"
head -1 "$tmp/tickets.jsonl" > "$tmp/tickets_1.jsonl"

# examples/w2 pointed at this server, with `max_in_flight` = $1, in its own directory.
definition() {
  local dir=$tmp/w2-$1
  mkdir -p "$dir"
  cp examples/w2/*.rhai "$dir/"
  sed -e "s|http://127.0.0.1:8100/v1|$URL|" -e "s|^max_in_flight = .*|max_in_flight = $1|" \
    examples/w2/system.toml > "$dir/system.toml"
  grep -q "base_url = \"$URL\"" "$dir/system.toml" || fail "examples/w2/system.toml: no base_url to point at the server"
  grep -q "^max_in_flight = $1\$" "$dir/system.toml" || fail "examples/w2/system.toml: no max_in_flight line"
  echo "$dir/system.toml"
}

# cmd...: runs the command, stdout to $tmp/out, stderr to $tmp/err; $tmp/time gets its "user
# sys wall" seconds, from wait4's rusage to the microsecond (GNU time rounds to 10 ms, the whole
# CPU time of bilayer's start-up). Stops the script if the command fails.
RUSAGE_PY='
import os, subprocess, sys, time
t0 = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_utime:.6f} {usage.ru_stime:.6f} {wall:.6f}\n")
sys.exit(os.waitstatus_to_exitcode(status))
'
timed() {
  local rc=0
  python3 -c "$RUSAGE_PY" "$tmp/time" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
  if [ $rc -ne 0 ]; then
    tail -5 "$tmp/err" >&2
    fail "FAILED (exit $rc): $*"
  fi
}
cpu_of() { awk '{printf "%.4f", $1 + $2}' "$tmp/time"; }
wall_of() { awk '{printf "%.3f", $3}' "$tmp/time"; }

# What bilayer's run left in $tmp/out (outcomes) and $tmp/err (summary), checked and turned
# into a RESULT line. Args: mode n tickets_file startup_cpu_s.
bilayer_result() {
  local mode=$1 n=$2 tickets=$3 startup=$4
  python3 - "$mode" "$n" "$tickets" "$startup" "$(cpu_of)" "$(wall_of)" "$(stats stats)" "$C" "$LAT" \
    "$tmp/out" "$tmp/err" "$PEERS" <<'PY'
import json, re, sys
mode, n, tickets, startup, cpu, wall, stats, c, lat, out, err, peers = sys.argv[1:]
sys.path.insert(0, peers)
import w2_common as w
n, c, lat, cpu, startup = int(n), int(c), float(lat), float(cpu), float(startup)
stats = json.loads(stats)
summary = open(err, encoding="utf-8").read()
problems = []
want = {}
for line in open(tickets, encoding="utf-8"):
    t = json.loads(line)
    want[t["id"]] = (w.expected_team(t["text"]), w.expected_reply(t["text"]))
counts = {"billing": 0, "technical": 0}
finished = {}
for line in open(out, encoding="utf-8"):
    o = json.loads(line)
    if o.get("status") != "ok":
        problems.append(f"input {o.get('input')}: {o.get('status')} {o.get('reason') or o.get('error')}")
        continue
    out_ = o["output"]
    if o.get("agent") != out_.get("team"):
        problems.append(f"input {o['input']}: ended at {o.get('agent')}, output says {out_.get('team')}")
    if o.get("agent") in counts:
        counts[o["agent"]] += 1
    finished[out_.get("id")] = (o.get("agent"), out_.get("reply"))
wrong = [tid for tid, end in want.items() if finished.get(tid) != end]
if wrong or len(finished) != n:
    problems.append(f"{len(wrong)} tickets missing or finished with the wrong team or reply "
                    f"(first {wrong[:3]}); {len(finished)} finished for {n}")
exp = w.expected(n)
if (counts["billing"], counts["technical"]) != exp:
    problems.append(f"billing/technical {counts['billing']}/{counts['technical']}, expected {exp[0]}/{exp[1]}")
if stats["requests"] != 2 * n:
    problems.append(f"the server answered {stats['requests']} chat requests, expected {2 * n}")
m = re.search(r"^(\d+) inputs in ([0-9.]+) s", summary, re.M)
if not m or int(m.group(1)) != n:
    problems.append(f"no summary line for {n} inputs on stderr")
seconds = float(m.group(2)) if m else float("nan")
p50 = p99 = "NA"
if mode == "latency":
    m = re.search(r"^latency: p50 ([0-9.]+) µs, p99 ([0-9.]+) µs", summary, re.M)
    if not m:
        problems.append("no latency line on stderr")
    else:
        p50, p99 = m.group(1), m.group(2)
calls = 2 * n
extra = f"process_s={wall} cpu_s={cpu:.3f} calls={calls} cpu_ms_per_call={cpu / calls * 1000:.3f} startup_cpu_s={startup:.4f}"
if calls > 2:
    extra += f" net_cpu_ms_per_call={(cpu - startup) / (calls - 2) * 1000:.3f}"
if mode == "throughput":
    extra += f" pct_of_ceiling={n / seconds / (c / (2 * lat / 1000)) * 100:.1f}"
print(f"RESULT system=bilayer mode={mode} n={n} seconds={seconds:.6f} tickets_per_s={n / seconds:.1f} "
      f"p50_us={p50} p99_us={p99} billing={counts['billing']} technical={counts['technical']} "
      f"peak_concurrency={stats['peak_concurrency']} {extra}", flush=True)
if problems:
    sys.exit("w2_compare: bilayer's outcomes are WRONG: " + "; ".join(problems))
PY
}

# bilayer: `bilayer run` of the generated definition; arg: mode.
startup_bilayer=
run_bilayer() {
  local mode=$1 n in_flight tickets
  if [ "$mode" = throughput ]; then n=$N; in_flight=$C; tickets=$tmp/tickets.jsonl
  else n=$LAT_N; in_flight=1; tickets=$tmp/tickets_latency.jsonl; fi
  local system; system=$(definition "$in_flight")
  if [ -z "$startup_bilayer" ]; then
    stats reset > /dev/null
    timed env RUST_LOG=error "$BIN" run "$system" --input "$tmp/tickets_1.jsonl"
    startup_bilayer=$(cpu_of)
  fi
  stats reset > /dev/null
  timed env RUST_LOG=error "$BIN" run "$system" --input "$tickets"
  bilayer_result "$mode" "$n" "$tickets" "$startup_bilayer"
}

# A peer: its RESULT line with the CPU figures appended. Args: name python script args...
declare -A startup_peer
run_peer() {
  local name=$1 py=$2 script=$3; shift 3
  if [ -z "${startup_peer[$name]:-}" ]; then
    timed "$py" "$PEERS/$script" "$@" --mode throughput --n 1 --warmup 0 --concurrency "$C" --url "$URL"
    startup_peer[$name]=$(cpu_of)
  fi
  local n
  timed "$py" "$PEERS/$script" "$@" --concurrency "$C" --url "$URL"
  n=$(grep -o '^RESULT .* n=[0-9]*' "$tmp/out" | sed 's/.*n=//' || true)
  [ -n "$n" ] || fail "$script printed no RESULT line"
  awk -v cpu="$(cpu_of)" -v wall="$(wall_of)" -v n="$n" -v w="$WARMUP" -v s="${startup_peer[$name]}" -v c="$C" -v lat="$LAT" '
    /^RESULT/ {
      calls = 2 * (n + w)
      line = sprintf("%s process_s=%s cpu_s=%.3f calls=%d cpu_ms_per_call=%.3f startup_cpu_s=%.4f net_cpu_ms_per_call=%.3f",
                     $0, wall, cpu, calls, cpu / calls * 1000, s, (cpu - s) / (calls - 2) * 1000)
      if ($0 ~ /mode=throughput/) {
        match($0, /tickets_per_s=[0-9.]+/); tps = substr($0, RSTART + 14, RLENGTH - 14)
        line = line sprintf(" pct_of_ceiling=%.1f", tps / (c / (2 * lat / 1000)) * 100)
      }
      print line
    }' "$tmp/out"
}

peers_py_has() { [ -n "$PY" ] && "$PY" -c "import $1" 2>/dev/null; }
if [ -z "$PY" ] && { has langgraph || has autogen-core; }; then
  echo "# PEERS_PY not set: LangGraph and autogen-core skipped" >&2
fi
echo "# W2 LLM-bound triage: server latency $LAT ms, $C tickets in flight; ceiling C / (2 × latency) = $(awk -v c="$C" -v l="$LAT" 'BEGIN { printf "%.0f", c / (2 * l / 1000) }') tickets/s, a ticket takes at least $((2 * LAT)) ms"
echo "# bilayer: $BIN; peers: $PEERS; asyncio on $ASYNCIO_PY${PY:+, LangGraph and autogen-core on $PY}"
for mode in throughput latency; do
  if [ "$mode" = throughput ]; then n_args=(--n "$N"); else n_args=(--n "$LAT_N"); fi
  if has bilayer; then run_bilayer "$mode"; fi
  if has asyncio; then run_peer asyncio "$ASYNCIO_PY" w2_asyncio.py --mode "$mode" "${n_args[@]}"; fi
  if has langgraph && peers_py_has langgraph; then
    run_peer langgraph "$PY" w2_langgraph.py --mode "$mode" "${n_args[@]}"
  fi
  if has autogen-core && peers_py_has autogen_core; then
    run_peer autogen-core "$PY" w2_autogen.py --mode "$mode" "${n_args[@]}" --forward publish
  fi
done
