#!/usr/bin/env bash
# Kubernetes audit ingest on `tidemark log`: bench/k8sload POSTs audit.k8s.io/v1
# EventLists of BATCH events (400: the kube-apiserver's default
# --audit-webhook-batch-max-size) to /v1/k8s/audit from WORKERS concurrent
# senders, as apiservers in batch mode do. The events are realistic apiserver
# events of about 1.3 KB (Metadata reads with service-account users, writes with
# a requestObject, forbidden secret reads: see bench/k8sload), each with a
# fresh auditID. Each run on a fresh data directory; prints the environment,
# each run with the load average, and the median (target >= 60,000 events/s).
#
# Environment (defaults in brackets):
#   RUNS [3]          runs
#   BATCH [400]       events per EventList
#   WORKERS [16]      concurrent senders (WORKERS x BATCH events in flight)
#   DURATION [20s]    measured time per run
#   WARMUP [3s]       unmeasured start
#   TIDEMARK_FLAGS    more `tidemark log` flags (e.g. batching)
#   KEEP_TMP [0]      keep data directories and logs
#   RESULTS           append each run's figures to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
BATCH="${BATCH:-400}"
WORKERS="${WORKERS:-16}"
DURATION="${DURATION:-20s}"
WARMUP="${WARMUP:-3s}"
TARGET_RATE=60000

cd "$REPO_DIR"
mkdir -p "$BIN"
go build -o "$BIN/tidemark" ./cmd/tidemark
go build -o "$BIN/k8sload" ./bench/k8sload
go build -o "$BIN/keygen" ./bench/keygen

bench_init
print_env "$@"
snapshot_tidemark
LG_ARGS=(--batch "$BATCH" --workers "$WORKERS" --duration "$DURATION" --warmup "$WARMUP")
echo "runs:     $RUNS"
echo "tidemark: $BIN/tidemark log --data DIR --listen 127.0.0.1:PORT --key KEYFILE ${TIDEMARK_FLAGS:-}"
echo "k8sload:  $BIN/k8sload --url http://127.0.0.1:PORT ${LG_ARGS[*]}"
echo "tmp:      $BENCH_TMP"
echo

RATES="" P50="" P99="" FAILED=0
for n in $(seq 1 "$RUNS"); do
  dir="$BENCH_TMP/k8s-$n"
  mkdir -p "$dir"
  make_key "$dir/log"
  if ! start_server tidemark "$dir/data" "$dir/log.key" "$dir/server.log"; then
    echo "run $n: FAILED (the server did not start)"; FAILED=1; record k8s tidemark events_per_sec events/s nan "$n"; continue
  fi
  lrc=0
  "$BIN/k8sload" --url "http://127.0.0.1:$SERVER_PORT" "${LG_ARGS[@]}" >"$dir/k8sload.log" 2>&1 &
  lpid=$!
  BENCH_PIDS+=("$lpid")
  wait "$lpid" || lrc=$?
  size="$(curl -fsS "http://127.0.0.1:$SERVER_PORT/checkpoint" | sed -n 2p || true)"
  stop_pid "$SERVER_PID"
  settle_disk "$dir/data"
  result="$(grep '^RESULT ' "$dir/k8sload.log" | tail -n 1 || true)"
  if [[ $lrc -ne 0 || -z "$result" ]]; then
    echo "run $n: FAILED (k8sload exit $lrc)"
    tail -n 5 "$dir/k8sload.log" | cut -c1-300; tail -n 10 "$dir/server.log" | cut -c1-300
    FAILED=1; record k8s tidemark events_per_sec events/s nan "$n"; continue
  fi
  [[ $n == 1 ]] && grep '^corpus:' "$dir/k8sload.log"
  echo "run $n (loadavg $(cut -d' ' -f1-3 /proc/loadavg), tree size $size): $result"
  RATES+="$(result_field "$result" events_per_sec) "
  record k8s tidemark events_per_sec events/s "$(result_field "$result" events_per_sec)" "$n"
  record k8s tidemark p99_ms ms "$(result_field "$result" p99_ms)" "$n"
  P50+="$(result_field "$result" p50_ms) "
  P99+="$(result_field "$result" p99_ms) "
done

echo
MED="$(median_of "$RATES")"
verdict="$(awk -v r="$MED" -v t="$TARGET_RATE" 'BEGIN { print (r + 0 >= t) ? "meets" : "BELOW" }')"
echo "== median: $MED events/s ($verdict the $TARGET_RATE target); EventList p50 $(median_of "$P50") ms, p99 $(median_of "$P99") ms (runs: ${RATES:-none}); loadavg now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "RESULT bench=k8s events_per_sec=$MED runs=$RUNS batch=$BATCH workers=$WORKERS"
exit "$FAILED"
