#!/usr/bin/env bash
# Batched event ingest on `tidemark log`: bench/loadgen --mode ndjson POSTs
# BATCH events per request to /v1/events as application/x-ndjson. Each run on a
# fresh data directory; prints each run and the median (target >= 80,000 events/s).
#
# Environment (defaults in brackets):
#   RUNS [3]          runs
#   BATCH [1000]      events per request
#   WORKERS [16]      concurrent requests (WORKERS x BATCH events in flight)
#   SIZE [500]        bytes of each event's JSON
#   DURATION [20s]    measured time per run
#   WARMUP [2s]       unmeasured start
#   LOADGEN_FLAGS     more loadgen flags (e.g. --token-file F)
#   TIDEMARK_FLAGS    more `tidemark log` flags (e.g. batching)
#   KEEP_TMP [0]      keep data directories and logs
#   SERVER [tidemark] or conformance (which has no /v1/events: only to check the script fails cleanly)
#   RESULTS           append each run's figures to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
BATCH="${BATCH:-1000}"
WORKERS="${WORKERS:-16}"
SIZE="${SIZE:-500}"
DURATION="${DURATION:-20s}"
WARMUP="${WARMUP:-2s}"
SERVER="${SERVER:-tidemark}"
TARGET_RATE=80000

need_bin loadgen keygen
[[ "$SERVER" == tidemark ]] && need_bin tidemark
[[ "$SERVER" == conformance ]] && need_bin posix

bench_init
print_env "$@"
snapshot_tidemark
# shellcheck disable=SC2206
LG_ARGS=(--batch "$BATCH" --workers "$WORKERS" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" ${LOADGEN_FLAGS:-})
echo "runs:     $RUNS"
echo "tidemark: $BIN/tidemark log --data DIR --listen 127.0.0.1:PORT --key KEYFILE ${TIDEMARK_FLAGS:-}"
echo "loadgen:  $BIN/loadgen --url http://127.0.0.1:PORT --mode ndjson ${LG_ARGS[*]}"
echo "tmp:      $BENCH_TMP"
echo

RATES="" P50="" P99=""
FAILED=0
for n in $(seq 1 "$RUNS"); do
  loadgen_run "$SERVER" ndjson "$n" "${LG_ARGS[@]}"
  if [[ -z "$LAST_RESULT" ]]; then FAILED=1; record ndjson tidemark events_per_sec events/s nan "$n"; continue; fi
  record ndjson tidemark events_per_sec events/s "$(result_field "$LAST_RESULT" events_per_sec)" "$n"
  record ndjson tidemark p99_ms ms "$(result_field "$LAST_RESULT" p99_ms)" "$n"
  RATES+="$(result_field "$LAST_RESULT" events_per_sec) "
  P50+="$(result_field "$LAST_RESULT" p50_ms) "
  P99+="$(result_field "$LAST_RESULT" p99_ms) "
done

echo
MED="$(median_of "$RATES")"
verdict="$(awk -v r="$MED" -v t="$TARGET_RATE" 'BEGIN { print (r + 0 >= t) ? "meets" : "BELOW" }')"
echo "== median: $MED events/s ($verdict the $TARGET_RATE target); batch p50 $(median_of "$P50") ms, p99 $(median_of "$P99") ms (runs: ${RATES:-none})"
echo "RESULT bench=ndjson events_per_sec=$MED runs=$RUNS batch=$BATCH workers=$WORKERS size=$SIZE"
exit "$FAILED"
