#!/usr/bin/env bash
# Resident memory of `tidemark log` while it ingests N keyed events, on POSIX
# (idempotency index in SQLite, DIR/.tidemark/idempotency.db) and on MySQL (index in
# the log's database): the index lives in the database, so RSS should stay flat as
# keys grow (before it moved there, an in-memory index grew about 280 B per key).
#
# Per backend, on a fresh data directory (and database): one `tidemark log`, then
# bench/loadgen --mode ndjson --count SEG --warmup 0 in segments up to each milestone
# (default 10%, 20%, 50% and 100% of N: 1M, 2M, 5M, 10M for N=10M). Every event has a
# unique "id" (loadgen's run id, corpus index and send counter), so every event is a
# new key in the index. After each segment the script reads VmRSS and VmHWM from
# /proc/PID/status and the Go heap from /metrics; a sampler also reads VmRSS every
# SAMPLE seconds, and the table shows the highest VmRSS seen during the segment. Then
# the log is stopped (SIGTERM) and started again on the same data with the N keys in
# its index: the restart time is from the process start until /readyz answers "ok"
# (a 200 that says "not taking writes" while the index opens does not count), then
# RSS right after, and after POST_RESTART more keyed events (0 skips them).
#
# Environment (defaults in brackets):
#   N [10000000]        events (= keys) per backend
#   MILESTONES          event counts to sample at (default: N/10 N/5 N/2 N)
#   BACKENDS ["posix mysql"]
#   BATCH [1000]  WORKERS [16]  SIZE [500]   loadgen --batch --workers --size
#   POST_RESTART [100000]  keyed events sent after the restart
#   SAMPLE [1]          seconds between RSS samples
#   TIDEMARK_FLAGS, LOADGEN_FLAGS   more flags
#   MYSQL_ADDR [127.0.0.1:3306]  MYSQL_USER [root]  MYSQL_PASSWORD []
#   KEEP_TMP [0]        keep the data directories, logs and database
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-10000000}"
BACKENDS="${BACKENDS:-posix mysql}"
BATCH="${BATCH:-1000}"
WORKERS="${WORKERS:-16}"
SIZE="${SIZE:-500}"
POST_RESTART="${POST_RESTART:-100000}"
SAMPLE="${SAMPLE:-1}"
MILESTONES="${MILESTONES:-$(( N / 10 )) $(( N / 5 )) $(( N / 2 )) $N}"

need_bin tidemark loadgen keygen
[[ " $BACKENDS " == *" mysql "* ]] && { mysql_cli -e 'SELECT 1' >/dev/null || { echo "cannot reach MySQL at $MYSQL_ADDR" >&2; exit 1; }; }

bench_init
print_env "$@"
snapshot_tidemark
# shellcheck disable=SC2206
LG_ARGS=(--mode ndjson --batch "$BATCH" --workers "$WORKERS" --size "$SIZE" --warmup 0 ${LOADGEN_FLAGS:-})
echo "N:          $N events per backend; milestones: $MILESTONES; backends: $BACKENDS"
echo "tidemark:   $BIN/tidemark log --data DIR [--mysql '$(mysql_dsn DB)'] --listen 127.0.0.1:PORT --key KEYFILE ${TIDEMARK_FLAGS:-}"
echo "loadgen:    $BIN/loadgen --url http://127.0.0.1:PORT ${LG_ARGS[*]} --count SEGMENT (one run per segment, each its own random run id)"
[[ " $BACKENDS " == *" mysql "* ]] && echo "mysql:      $MYSQL_ADDR, $(mysql_cli -N -e 'SELECT VERSION()'), innodb_buffer_pool_size $(mysql_cli -N -e 'SELECT @@innodb_buffer_pool_size')"
echo "tmp:        $BENCH_TMP"
echo

FAILED=0
SUMMARY=()

# heap_mib PORT: the Go heap in use (go_memstats_heap_inuse_bytes), MiB.
heap_mib() {
  curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null \
    | awk '$1 == "go_memstats_heap_inuse_bytes" { printf "%.0f", $2 / 1048576; f = 1 } END { if (!f) print "nan" }'
}
kib_mib() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.0f", k / 1024; else print "nan" }'; }

# start_rss_sampler PID FILE: appends "unix-seconds VmRSS VmHWM" (KiB) every SAMPLE s.
start_rss_sampler() {
  local pid="$1" out="$2"
  ( while kill -0 "$pid" 2>/dev/null; do echo "$(date +%s.%N) $(proc_mem "$pid")" >>"$out"; sleep "$SAMPLE"; done ) &
  SAMPLER_PID=$!
  BENCH_PIDS+=("$SAMPLER_PID")
}

# start_log BACKEND DIR DSN LOGF: `tidemark log` on DIR (and DSN); sets SERVER_PORT, SERVER_PID.
start_log() {
  local backend="$1" dir="$2" dsn="$3" logf="$4"
  if [[ "$backend" == mysql ]]; then
    start_mysql_server tidemark "$dsn" "$dir/data" "$dir/log.key" "$logf"
  else
    start_server tidemark "$dir/data" "$dir/log.key" "$logf"
  fi
}

# wait_readyz_ok PORT PID SECONDS: until /readyz answers 200 with the body "ok" (not
# "ok: serving reads; not taking writes"); prints seconds to the first 200 and to "ok".
wait_readyz_ok() {
  local port="$1" pid="$2" secs="$3" t0="$4" body first="nan" t
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "nan nan"; return 1; fi
    body="$(curl -fsS --max-time 1 "http://127.0.0.1:$port/readyz" 2>/dev/null || true)"
    t="$(date +%s.%N)"
    if [[ -n "$body" && "$first" == nan ]]; then first="$(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"; fi
    if [[ "$body" == ok ]]; then echo "$first $(awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')"; return 0; fi
    if awk -v a="$t" -v b="$t0" -v s="$secs" 'BEGIN { exit !(a - b > s) }'; then echo "$first nan"; return 1; fi
    sleep 0.05
  done
}

# segment PORT DIR NAME COUNT: one loadgen --count COUNT; sets SEG_RESULT (RESULT line or "").
segment() {
  local port="$1" dir="$2" name="$3" count="$4" lrc=0
  "$BIN/loadgen" --url "http://127.0.0.1:$port" "${LG_ARGS[@]}" --count "$count" >"$dir/loadgen-$name.log" 2>&1 &
  local lpid=$!
  BENCH_PIDS+=("$lpid")
  wait "$lpid" || lrc=$?
  SEG_RESULT="$(grep '^RESULT ' "$dir/loadgen-$name.log" | tail -n 1 || true)"
  if [[ $lrc -ne 0 || -z "$SEG_RESULT" || "$(result_field "$SEG_RESULT" errors)" != 0 ]]; then
    echo "  segment $name: FAILED (loadgen exit $lrc)"; tail -n 8 "$dir/loadgen-$name.log" | cut -c1-300 | sed 's/^/    /'
    SEG_RESULT=""
    return 1
  fi
}

one_backend() {
  local backend="$1"
  local dir="$BENCH_TMP/$backend" db="" dsn="" done_events=0 m seg t0 t1 rss hwm maxrss
  mkdir -p "$dir"
  make_key "$dir/log"
  if [[ "$backend" == mysql ]]; then
    db="tidemark_bench_$$_memory"
    mysql_create_db "$db"
    dsn="$(mysql_dsn "$db")"
  fi
  echo "== $backend"
  if ! start_log "$backend" "$dir" "$dsn" "$dir/server.log"; then
    echo "$backend: FAILED (the server did not start)"; FAILED=1; return 0
  fi
  local port="$SERVER_PORT" pid="$SERVER_PID" samples="$dir/rss.txt"
  start_rss_sampler "$pid" "$samples"
  local sampler="$SAMPLER_PID"
  read -r rss hwm <<<"$(proc_mem "$pid")"
  printf '%-7s %12s %10s %10s %13s %10s %12s %10s %s\n' backend events VmRSS_MiB VmHWM_MiB seg_max_RSS heap_MiB "seg_events/s" elapsed_s loadavg
  printf '%-7s %12s %10s %10s %13s %10s %12s %10s %s\n' "$backend" 0 "$(kib_mib "$rss")" "$(kib_mib "$hwm")" - "$(heap_mib "$port")" - 0 "$(cut -d' ' -f1 /proc/loadavg)"
  local first_rss="" first_n="" total_secs=0 t_start
  t_start="$(date +%s.%N)"
  for m in $MILESTONES; do
    seg=$(( m - done_events ))
    (( seg > 0 )) || continue
    t0="$(date +%s.%N)"
    if ! segment "$port" "$dir" "$m" "$seg"; then FAILED=1; break; fi
    t1="$(date +%s.%N)"
    done_events="$m"
    read -r rss hwm <<<"$(proc_mem "$pid")"
    maxrss="$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b && $2 + 0 > m { m = $2 } END { print m + 0 }' "$samples")"
    local rate elapsed
    rate="$(result_field "$SEG_RESULT" events_per_sec)"
    elapsed="$(awk -v a="$t1" -v b="$t_start" 'BEGIN { printf "%.0f", a - b }')"
    printf '%-7s %12s %10s %10s %13s %10s %12s %10s %s\n' "$backend" "$m" "$(kib_mib "$rss")" "$(kib_mib "$hwm")" "$(kib_mib "$maxrss")" "$(heap_mib "$port")" "$rate" "$elapsed" "$(cut -d' ' -f1 /proc/loadavg)"
    [[ -z "$first_rss" ]] && { first_rss="$rss"; first_n="$m"; }
    LAST_RSS="$rss" LAST_HWM="$hwm"
  done
  local ingest_secs ingest_rate per_key
  ingest_secs="$(awk -v a="$(date +%s.%N)" -v b="$t_start" 'BEGIN { printf "%.1f", a - b }')"
  ingest_rate="$(awk -v n="$done_events" -v s="$ingest_secs" 'BEGIN { printf "%.0f", n / s }')"
  per_key="nan"
  if [[ -n "$first_rss" && "$done_events" -gt "${first_n:-0}" ]]; then
    per_key="$(awk -v a="$LAST_RSS" -v b="$first_rss" -v n="$done_events" -v f="$first_n" 'BEGIN { printf "%.1f", (a - b) * 1024 / (n - f) }')"
  fi
  local size_on_disk
  if [[ "$backend" == mysql ]]; then
    size_on_disk="db $(awk -v b="$(mysql_db_bytes "$db")" 'BEGIN { printf "%.0f", b / 1048576 }') MiB (InnoDB estimate)"
  else
    size_on_disk="data $(du -sm "$dir/data" | cut -f1) MiB, index $(du -smc "$dir/data/.tidemark/"idempotency.db* 2>/dev/null | tail -n 1 | cut -f1) MiB"
  fi
  echo "$backend: $done_events events in ${ingest_secs}s (${ingest_rate}/s overall); VmRSS growth from $first_n to $done_events events: $per_key B per event; $size_on_disk"

  # Restart with the N keys in the index.
  stop_pid "$pid"; stop_pid "$sampler"
  local t_restart ready restart_rss restart_hwm post_rss="nan" post_rate="nan"
  t_restart="$(date +%s.%N)"
  if [[ "$backend" == mysql ]]; then
    "${TIDEMARK_BIN:-$BIN/tidemark}" log --mysql "$dsn" --data "$dir/data" --listen "127.0.0.1:$port" --key "$dir/log.key" ${TIDEMARK_FLAGS:-} >"$dir/server-restart.log" 2>&1 &
  else
    "${TIDEMARK_BIN:-$BIN/tidemark}" log --data "$dir/data" --listen "127.0.0.1:$port" --key "$dir/log.key" ${TIDEMARK_FLAGS:-} >"$dir/server-restart.log" 2>&1 &
  fi
  pid=$!
  BENCH_PIDS+=("$pid")
  if ! ready="$(wait_readyz_ok "$port" "$pid" "${RESTART_TIMEOUT:-600}" "$t_restart")"; then
    echo "$backend restart: FAILED (readyz never answered ok: $ready)"; tail -n 12 "$dir/server-restart.log" | cut -c1-300
    FAILED=1; stop_pid "$pid"; [[ -n "$db" ]] && mysql_drop_db "$db"; settle_disk "$dir"; return 0
  fi
  read -r restart_rss restart_hwm <<<"$(proc_mem "$pid")"
  if (( POST_RESTART > 0 )); then
    if segment "$port" "$dir" restart "$POST_RESTART"; then
      post_rate="$(result_field "$SEG_RESULT" events_per_sec)"
      read -r post_rss _ <<<"$(proc_mem "$pid")"
      post_rss="$(kib_mib "$post_rss")"
    else
      FAILED=1
    fi
  fi
  read -r -a rt <<<"$ready"
  echo "$backend restart with $done_events keys: first /readyz answer after ${rt[0]}s, \"ok\" after ${rt[1]}s; VmRSS $(kib_mib "$restart_rss") MiB (VmHWM $(kib_mib "$restart_hwm")) when ready; after $POST_RESTART more events ($post_rate/s): VmRSS $post_rss MiB"
  SUMMARY+=("$(printf '%-7s %11s %11s %13s %12s %10s %12s %13s %13s %12s' "$backend" "$done_events" "$ingest_rate" "$(kib_mib "$first_rss")" "$(kib_mib "$LAST_RSS")" "$(kib_mib "$LAST_HWM")" "$per_key" "${rt[1]}" "$(kib_mib "$restart_rss")" "$post_rss")")
  stop_pid "$pid"
  [[ -n "$db" ]] && mysql_drop_db "$db"
  settle_disk "$dir"
  echo
}

for b in $BACKENDS; do
  one_backend "$b"
done

echo "== summary (noisy 2-core machine shared with other work; MiB; RSS at the first and last milestone)"
printf '%-7s %11s %11s %13s %12s %10s %12s %13s %13s %12s\n' backend events "ingest/s" "RSS@first" "RSS@last" "HWM@last" "B/event" "restart_s" "RSS@restart" "RSS+post"
for l in "${SUMMARY[@]:-}"; do [[ -n "$l" ]] && echo "$l"; done
exit "$FAILED"
