# Shared by the scripts that run W1 through `bilayer run` (w1_run_compare.sh,
# durable_compare.sh): where the peers are, the binary, the orders as JSONL, the expected
# answer. Sourced from the repository's root; defines PEERS and BIN.
PEERS=$(cd "${PEERS_DIR:-../shared/peers}" 2>/dev/null && pwd) \
  || { echo "$(basename "$0"): no peers at ${PEERS_DIR:-../shared/peers}: set PEERS_DIR" >&2; exit 1; }
if [ -n "${BILAYER_BIN:-}" ]; then
  BIN=$BILAYER_BIN
else
  cargo build --profile dist >/dev/null 2>&1 \
    || { echo "$(basename "$0"): cargo build --profile dist failed" >&2; exit 1; }
  BIN=${CARGO_TARGET_DIR:-target}/dist/bilayer
fi

fail() { echo "$(basename "$0"): $*" >&2; exit 1; }

# w1_orders N FILE: the first N W1 orders as examples/orders/orders.jsonl writes them.
w1_orders() {
  python3 - "$PEERS" "$1" > "$2" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1])
from w1_common import order_fields
for i in range(int(sys.argv[2])):
    oid, q, p = order_fields(i)
    print(json.dumps({"order_id": oid, "quantity": q, "price": p}))
PY
}

# w1_expected N: "SHIPPED REJECTED" for the first N orders (w1_common.expected).
w1_expected() {
  python3 -c "import sys; sys.path.insert(0, '$PEERS'); from w1_common import expected; e = expected($1); print(e[0], e[1])"
}

# peer LABEL PYTHON SCRIPT ARGS...: runs a peer of ../shared/peers and prints its RESULT line;
# its output and status 1 if it fails or prints none.
peer() {
  local label=$1 py=$2 out
  shift 2
  out=$(mktemp)
  (cd "$PEERS" && "$py" "$@") > "$out" 2>&1 || { cat "$out" >&2; rm -f "$out"; fail "$label failed"; }
  grep '^RESULT' "$out" || { rm -f "$out"; fail "$label printed no RESULT line"; }
  rm -f "$out"
}
