#!/usr/bin/env bash
# Pacing per provider: each provider anchors its own set of small files through the real services
# and the sandbox (every API at its documented limits, scaled to a WINDOW-second window), in one
# run; beside it, the worker script of the ProofLedger v1 document on the same sandbox and the same
# number of files.
#
#   bash bench/provider_bench.sh [BUILD_DIR]      (writes bench/results/providers.md)
#
# ANCHORD_PEER_PROOFLEDGER_WORKER: path of that worker script (not part of this repository: it is
# the full Python worker printed in the ProofLedger v1 document, docs/providers/proofledger.md, saved
# as a file, with its API URL, key and progress file read from PEER_API_URL, PEER_API_KEY and
# PEER_PROGRESS_FILE and its directory from the first argument; needs python3-requests). Unset:
# the worker's row is skipped with a message saying so.
#
# Figures: wall time until every digest is accepted (SUBMITTED), files per window achieved as a
# fraction of the create limit that applies to the submitter, 429s received, and provider
# requests per file (the poller's status checks during the run included).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="$(cd "${1:-build}" && pwd)"
WINDOW="${WINDOW:-2}"
WINDOWS="${WINDOWS:-10}"   # each provider gets enough files for this many full windows
CTL="$BUILD/services/anchorctl/anchorctl"
PEER="${ANCHORD_PEER_PROOFLEDGER_WORKER:-}"
WORK="$(mktemp -d /tmp/anchord-provider-bench.XXXXXX)"
STATE="$WORK/state"
mkdir -p "$WORK/root" bench/results

"$CTL" --data-dir "$STATE" local --sandbox --root "$WORK/root" --bin-dir "$BUILD/services/anchorctl" \
  --sandbox-window-seconds "$WINDOW" --sandbox-confirm-after-seconds 5 --poll-interval-seconds 1 \
  > "$WORK/local.log" 2>&1 &
LOCAL=$!
cleanup() { kill "$LOCAL" 2>/dev/null || true; wait "$LOCAL" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 1 100); do [ -s "$STATE/run/stack.json" ] && break; sleep 0.2; done
PORT=$(cat "$STATE/run/sandbox.port")
stats() { curl -s "http://127.0.0.1:$PORT/_sandbox/stats" > "$1"; }

make_tree() {  # dir count tag
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import os, sys
root, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(root, exist_ok=True)
for i in range(n):
    with open(os.path.join(root, f"f{i:06d}.txt"), "wb") as f:
        f.write(f"{tag} evidence {i}\n".encode() + os.urandom(256))
PY
}

row() {  # label api files seconds limit_per_window before.json after.json
  /usr/bin/python3 - "$@" <<'PY'
import json, sys
label, api, files, secs, limit, before, after = sys.argv[1:8]
files, secs, limit, window = int(files), float(secs), float(limit), float(sys.argv[8])
b, a = json.load(open(before)).get(api, {}), json.load(open(after)).get(api, {})
d = lambda k: a.get(k, 0) - b.get(k, 0)
per_window = files / (secs / window)
frac = f"{100 * per_window / limit:.1f}%" if limit > 0 else "n/a (no documented limit)"
print(f"| {label} | {files} | {secs:.1f} s | {per_window:.1f} | {limit:g} | {frac} | "
      f"{d('rate_limited_total')} | {d('requests_total') / files:.2f} |")
PY
}

{
echo "## Pacing per provider (sandbox at documented limits, ${WINDOW} s window)"
echo
echo "| client / provider | files | time to SUBMITTED | files per window | create limit per window | fraction of limit | 429s | requests per file |"
echo "|---|---|---|---|---|---|---|---|"
} > "$WORK/table.md"

# provider, sandbox stats key, the submitter's create limit per window (see anchorctl's local
# stack: proofd 30 of 30; ProofLedger 60 (the sandbox's choice; the document names none);
# SimpleProof 20 requests of the token's 60, 25 hashes each; calendars: no documented limit).
for spec in "proofd proofd 30" "proofledger proofledger 60" "simpleproof simpleproof 500" "ots calendar 0"; do
  set -- $spec
  provider=$1 api=$2 limit=$3
  n=$(( limit > 0 ? limit * WINDOWS : 60 ))
  [ "$provider" = simpleproof ] && n=$(( 20 * 25 * WINDOWS ))
  make_tree "$WORK/root/$provider" "$n" "$provider"
  stats "$WORK/$provider.before"
  start=$(date +%s.%N)
  "$CTL" --data-dir "$STATE" archive "$WORK/root/$provider" --job "bench-$provider" --provider "$provider" \
    --wait submitted --timeout-seconds 900 > "$WORK/$provider.out" 2>&1
  end=$(date +%s.%N)
  stats "$WORK/$provider.after"
  row "anchord / $provider" "$api" "$n" "$(echo "$end - $start" | bc)" "$limit" \
    "$WORK/$provider.before" "$WORK/$provider.after" "$WINDOW" >> "$WORK/table.md"
done

# The document's worker, same sandbox, same number of files as anchord's ProofLedger run.
if [ -z "$PEER" ] || [ ! -r "$PEER" ]; then
  echo "provider_bench: skipping the proofledger_worker.py row: set ANCHORD_PEER_PROOFLEDGER_WORKER" \
    "to the ProofLedger v1 document's worker script (see the header of this script)" >&2
  echo "| proofledger_worker.py | skipped: ANCHORD_PEER_PROOFLEDGER_WORKER not set | | | | | | |" \
    >> "$WORK/table.md"
else
n=$(( 60 * WINDOWS ))
make_tree "$WORK/peer" "$n" "peer"
stats "$WORK/peer.before"
start=$(date +%s.%N)
PEER_API_URL="http://127.0.0.1:$PORT/api/v1/proof" PEER_API_KEY="sk_sandbox" \
  PEER_PROGRESS_FILE="$WORK/peer_progress.json" timeout 1800 /usr/bin/python3 "$PEER" "$WORK/peer" \
  > "$WORK/peer.out" 2>&1 || true
end=$(date +%s.%N)
stats "$WORK/peer.after"
done_files=$(/usr/bin/python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))))" "$WORK/peer_progress.json" 2>/dev/null || echo 0)
row "proofledger_worker.py ($done_files of $n anchored)" proofledger "$n" "$(echo "$end - $start" | bc)" 60 \
  "$WORK/peer.before" "$WORK/peer.after" "$WINDOW" >> "$WORK/table.md"
fi
cp "$WORK/table.md" bench/results/providers.md
cat bench/results/providers.md
