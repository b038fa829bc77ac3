#!/usr/bin/env bash
# Ingest in commitment mode beside the default (event) mode, in one command on
# one machine: `tidemark log --leaves commitment` against `--leaves event`,
# alternated ABBA (run i is event,commitment for odd i, commitment,event for
# even i), each run on a fresh data directory, under the same NDJSON load as
# bench/ndjson.sh (BATCH events of SIZE bytes per request, every event with its
# own id). Commitment mode draws a salt and hashes each event, and writes each
# event with its salt to the payload store before the leaves are appended.
# Target: commitment mode at least 0.8x the event mode's rate.
#
# Environment (defaults in brackets):
#   RUNS [3]          runs per mode
#   BATCH [1000]      events per request
#   WORKERS [16]      concurrent requests
#   SIZE [500]        bytes of each event's JSON
#   DURATION [15s]    measured time per run
#   WARMUP [2s]       unmeasured start
#   MODE [ndjson]     loadgen mode: ndjson, or events (one event per request, 256 workers)
#   TIDEMARK_FLAGS    more `tidemark log` flags for both modes
#   KEEP_TMP [0]      keep data directories and logs
#   RESULTS           append each run's figures as JSON lines (comparison commitment,
#                     contenders commitment and event; bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
BATCH="${BATCH:-1000}"
WORKERS="${WORKERS:-16}"
SIZE="${SIZE:-500}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
MODE="${MODE:-ndjson}"
TARGET_RATIO=0.8

need_bin loadgen keygen tidemark
bench_init
print_env "$@"
snapshot_tidemark
BASE_FLAGS="${TIDEMARK_FLAGS:-}"
case "$MODE" in
  ndjson) LG_ARGS=(--batch "$BATCH" --workers "$WORKERS") ;;
  events) LG_ARGS=(--workers 256) ;;
  *) echo "MODE must be ndjson or events" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206
LG_ARGS+=(--size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" ${LOADGEN_FLAGS:-})
echo "runs:     $RUNS per mode, ABBA"
echo "tidemark: $BIN/tidemark log --data DIR --listen 127.0.0.1:PORT --key KEYFILE $BASE_FLAGS --leaves event|commitment"
echo "loadgen:  $BIN/loadgen --url http://127.0.0.1:PORT --mode $MODE ${LG_ARGS[*]}"
echo "tmp:      $BENCH_TMP"
echo

declare -A RATES=()
PAIRS=""
FAILED=0
for n in $(seq 1 "$RUNS"); do
  order=(event commitment)
  (( n % 2 == 0 )) && order=(commitment event)
  declare -A got=()
  for m in "${order[@]}"; do
    RUN_TAG="$m" TIDEMARK_FLAGS="$BASE_FLAGS --leaves $m" loadgen_run tidemark "$MODE" "$n" "${LG_ARGS[@]}"
    if [[ -z "$LAST_RESULT" ]]; then
      FAILED=1; got[$m]=""; record commitment "$m" events_per_sec events/s nan "$n"; continue
    fi
    got[$m]="$(result_field "$LAST_RESULT" events_per_sec)"
    RATES[$m]+="${got[$m]} "
    record commitment "$m" events_per_sec events/s "${got[$m]}" "$n"
  done
  [[ -n "${got[event]}" && -n "${got[commitment]}" ]] && PAIRS+="$(ratio "${got[commitment]}" "${got[event]}") "
done

echo
ME="$(median_of "${RATES[event]:-}")"
MC="$(median_of "${RATES[commitment]:-}")"
R="$(ratio "$MC" "$ME")"
verdict="$(awk -v r="$R" -v t="$TARGET_RATIO" 'BEGIN { print (r + 0 >= t) ? "meets" : "BELOW" }')"
echo "== event mode: median $ME events/s (runs: ${RATES[event]:-none})"
echo "== commitment mode: median $MC events/s (runs: ${RATES[commitment]:-none})"
echo "== commitment/event: $R ($verdict the ${TARGET_RATIO}x target); per-pair ratios: ${PAIRS:-none}"
echo "RESULT bench=commitment mode=$MODE event=$ME commitment=$MC ratio=$R runs=$RUNS batch=$BATCH size=$SIZE"
exit "$FAILED"
