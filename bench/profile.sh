#!/usr/bin/env bash
# A CPU profile of `tidemark log` under one of the ingest loads: a fresh log
# with an admin listener (--admin-listen, where /debug/pprof/ is served), the
# load started, and /debug/pprof/profile taken for SECONDS once it runs.
#
#   bench/profile.sh LOAD OUT.pprof
#   go tool pprof -top -cum bench/.bin/tidemark OUT.pprof
#
# LOAD is ndjson (loadgen --mode ndjson --batch 1000 --workers 16 --size 500, as
# ndjson.sh), k8s (k8sload --batch 400 --workers 16, as k8s.sh) or add (Tessera's
# hammer, 256 writers, no duplicates, leaves of 256 bytes, as add-vs-conformance.sh).
#
# Environment (defaults in brackets):
#   SECONDS_PROFILED [10]  length of the profile; the load runs 4 s longer
#   TIDEMARK [bench/.bin/tidemark]  the binary to profile
#   TIDEMARK_FLAGS         more `tidemark log` flags
#   KEEP_TMP [0]           keep the data directory and logs
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -ne 2 ]]; then
  echo "usage: bench/profile.sh ndjson|k8s|add OUT.pprof" >&2
  exit 2
fi
LOAD="$1"
OUT="$2"
SECS="${SECONDS_PROFILED:-10}"
TM="${TIDEMARK:-$BIN/tidemark}"
case "$LOAD" in
  ndjson) need_bin loadgen keygen ;;
  k8s) need_bin k8sload keygen ;;
  add) need_bin hammer keygen ;;
  *) echo "LOAD must be ndjson, k8s or add" >&2; exit 2 ;;
esac
[[ -x "$TM" ]] || { echo "no tidemark binary at $TM: run bench/tools.sh" >&2; exit 1; }

bench_init
cp "$TM" "$BENCH_TMP/tidemark"
make_key "$BENCH_TMP/log"
port="$(free_port)"
aport="$(free_port)"
# shellcheck disable=SC2086
"$BENCH_TMP/tidemark" log --data "$BENCH_TMP/data" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$aport" \
  --key "$BENCH_TMP/log.key" --log-level warn ${TIDEMARK_FLAGS:-} >"$BENCH_TMP/server.log" 2>&1 &
SERVER_PID=$!
BENCH_PIDS+=("$SERVER_PID")
wait_ready "http://127.0.0.1:$port/checkpoint" "$SERVER_PID" 30
url="http://127.0.0.1:$port"
dur=$((SECS + 4))
case "$LOAD" in
  ndjson) "$BIN/loadgen" --url "$url" --mode ndjson --batch 1000 --workers 16 --size 500 --duration "${dur}s" --warmup 0s >"$BENCH_TMP/load.log" 2>&1 & ;;
  k8s) "$BIN/k8sload" --url "$url" --batch 400 --workers 16 --duration "${dur}s" --warmup 0s >"$BENCH_TMP/load.log" 2>&1 & ;;
  add) "$BIN/hammer" --log_url "$url/" --log_public_key "$(cat "$BENCH_TMP/log.pub")" --num_writers=256 --max_write_ops=1000000 \
    --max_read_ops=0 --num_readers_random=0 --num_readers_full=0 --show_ui=false --leaf_min_size=256 --dup_chance=0 \
    --max_runtime="${dur}s" --logtostderr >"$BENCH_TMP/load.log" 2>&1 & ;;
esac
LOAD_PID=$!
BENCH_PIDS+=("$LOAD_PID")
sleep 2
s0="$(curl -fsS "$url/checkpoint" | sed -n 2p)"
curl -fsS -o "$OUT" "http://127.0.0.1:$aport/debug/pprof/profile?seconds=$SECS"
s1="$(curl -fsS "$url/checkpoint" | sed -n 2p)"
wait "$LOAD_PID" || true
echo "$LOAD: $OUT, $SECS s; the log grew by $((s1 - s0)) entries meanwhile (~$(((s1 - s0) / SECS))/s); loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
