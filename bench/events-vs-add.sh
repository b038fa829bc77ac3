#!/usr/bin/env bash
# Tidemark's event ingest (POST /v1/events, one JSON event per request) against
# its raw Tessera-compatible ingest (POST /add, the same event bytes) on
# `tidemark log`, with bench/loadgen: same corpus, workers and event size.
# Runs alternate (events first on odd runs, add first on even runs), each on a
# fresh data directory. Prints each run, the medians and the ratio events/add
# (target >= 0.8: the event path's parsing, canonicalisation, dedup index and
# receipts bookkeeping should cost at most a fifth of raw throughput).
#
# Environment (defaults in brackets):
#   RUNS [5]          runs per mode
#   WORKERS [256]     loadgen --workers (concurrent requests; see FIELD-NOTES on batch fill)
#   SIZE [500]        loadgen --size (bytes of each event's JSON)
#   DURATION [15s]    loadgen --duration (measured)
#   WARMUP [2s]       loadgen --warmup
#   LOADGEN_FLAGS     more loadgen flags (e.g. --token-file F)
#   TIDEMARK_FLAGS    more `tidemark log` flags (e.g. batching)
#   SERVER [tidemark] tidemark, or conformance to try the script (only add mode works there)
#   MODES ["events add"] the loadgen modes to alternate (MODES=add with SERVER=conformance)
#   KEEP_TMP [0]      keep data directories and logs
#   RESULTS           append each run's figures to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-5}"
WORKERS="${WORKERS:-256}"
SIZE="${SIZE:-500}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
SERVER="${SERVER:-tidemark}"
MODES="${MODES:-events add}"

need_bin loadgen keygen
[[ "$SERVER" == tidemark ]] && need_bin tidemark
[[ "$SERVER" == conformance ]] && need_bin posix

bench_init
print_env "$@"
snapshot_tidemark
# shellcheck disable=SC2206
LG_ARGS=(--workers "$WORKERS" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" --quiet=false ${LOADGEN_FLAGS:-})
echo "runs:     $RUNS per mode, alternating ($MODES)"
echo "server:   $SERVER; tidemark: $BIN/tidemark log --data DIR --listen 127.0.0.1:PORT --key KEYFILE ${TIDEMARK_FLAGS:-}"
echo "loadgen:  $BIN/loadgen --url http://127.0.0.1:PORT --mode MODE ${LG_ARGS[*]}"
echo "tmp:      $BENCH_TMP"
echo

declare -A RATES=() P50=() P99=()
FAILED=0
read -r -a MLIST <<<"$MODES"
for n in $(seq 1 "$RUNS"); do
  order=("${MLIST[@]}")
  if (( n % 2 == 0 )) && (( ${#MLIST[@]} == 2 )); then order=("${MLIST[1]}" "${MLIST[0]}"); fi
  for m in "${order[@]}"; do
    loadgen_run "$SERVER" "$m" "$n" "${LG_ARGS[@]}"
    if [[ -z "$LAST_RESULT" ]]; then FAILED=1; record events-vs-add "$m" events_per_sec events/s nan "$n"; continue; fi
    record events-vs-add "$m" events_per_sec events/s "$(result_field "$LAST_RESULT" events_per_sec)" "$n"
    record events-vs-add "$m" p99_ms ms "$(result_field "$LAST_RESULT" p99_ms)" "$n"
    RATES[$m]+="$(result_field "$LAST_RESULT" events_per_sec) "
    P50[$m]+="$(result_field "$LAST_RESULT" p50_ms) "
    P99[$m]+="$(result_field "$LAST_RESULT" p99_ms) "
  done
done

echo
echo "== medians ($SERVER, $WORKERS workers, ${SIZE}-byte events, $DURATION per run)"
declare -A MED=()
for m in "${MLIST[@]}"; do
  MED[$m]="$(median_of "${RATES[$m]:-}")"
  echo "$m: median ${MED[$m]} events/s, p50 $(median_of "${P50[$m]:-}") ms, p99 $(median_of "${P99[$m]:-}") ms (runs: ${RATES[$m]:-none})"
done
if [[ -n "${MED[events]:-}" && -n "${MED[add]:-}" ]]; then
  r="$(ratio "${MED[events]}" "${MED[add]}")"
  verdict="$(awk -v r="$r" 'BEGIN { print (r != "nan" && r + 0 >= 0.8) ? "meets" : "BELOW" }')"
  echo "ratio events/add: $r ($verdict the 0.8 target)"
  echo "RESULT bench=events-vs-add events=${MED[events]} add=${MED[add]} ratio=$r runs=$RUNS workers=$WORKERS size=$SIZE"
fi
exit "$FAILED"
