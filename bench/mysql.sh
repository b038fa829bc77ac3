#!/usr/bin/env bash
# Writes on `tidemark log --mysql` (Tessera's MySQL driver) with 1, 2 and 3
# frontends on one database, beside Tessera's own conformance/mysql server
# (v1.0.4), all under Tessera's hammer with the same flags; then NDJSON batches
# of keyed events (bench/loadgen) against 1 and 3 frontends.
#
# Contenders (TARGETS):
#   tidemark-F    F `tidemark log --mysql DSN` processes (same key, each its own --data
#                 and port); the hammer gets --write_log_url once per frontend (it
#                 round-robins its writes) and reads from the first
#   conformance   cmd/conformance/mysql, --publish_interval=1s (tidemark's default
#                 --checkpoint-interval; conformance's own default is 3s)
#   ndjson-F      F frontends, one loadgen --mode ndjson per frontend, NDJSON_WORKERS
#                 requests in flight in all (split between them), BATCH keyed events
#                 (unique "id" members, so every event goes through the idempotency
#                 index) of SIZE bytes per request, DURATION measured after WARMUP
# Every run is on a fresh database (tidemark_bench_<pid>_<target>_<run>, dropped after the
# run) and a fresh key. Runs alternate ABBA: odd runs take TARGETS in order, even runs
# in reverse. The hammer's rate is N / D from its line "Reached tree size goal of N after D"
# (D overstates the time by 1-3 s: see add-vs-conformance.sh), beside a steady rate from
# /checkpoint polled every 0.1 s (growth between 10% and 90% of the goal). After each run
# Tessera's fsck checks the whole log over HTTP (through the first frontend).
#
# Environment (defaults in brackets):
#   RUNS [3]             runs per contender
#   TARGETS ["tidemark-1 tidemark-2 tidemark-3 conformance ndjson-1 ndjson-3"]
#   LEAVES [40000]       --leaf_write_goal of each hammer run (about 20 s at the rates seen here)
#   WRITERS [256]        --num_writers
#   LEAF_SIZE [256]      --leaf_min_size
#   DUP_CHANCE [0]       --dup_chance
#   MAX_RUNTIME [180s]   --max_runtime: a hammer run that takes longer fails
#   BATCH [1000]  SIZE [500]  NDJSON_WORKERS [16]  DURATION [20s]  WARMUP [2s]   (ndjson-F)
#   HAMMER_FLAGS, TIDEMARK_FLAGS, CONFORMANCE_FLAGS, LOADGEN_FLAGS   more flags
#   MYSQL_ADDR [127.0.0.1:3306]  MYSQL_USER [root]  MYSQL_PASSWORD []
#   FSCK [1]             run fsck after each run
#   KEEP_TMP [0]         keep data directories, logs and databases
#   RESULTS              append each run's figures to this file as JSON lines (bench/README.md);
#                        contenders tidemark-F, conformance/mysql, ndjson-F
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
TARGETS="${TARGETS:-tidemark-1 tidemark-2 tidemark-3 conformance ndjson-1 ndjson-3}"
LEAVES="${LEAVES:-40000}"
WRITERS="${WRITERS:-256}"
LEAF_SIZE="${LEAF_SIZE:-256}"
DUP_CHANCE="${DUP_CHANCE:-0}"
MAX_RUNTIME="${MAX_RUNTIME:-180s}"
BATCH="${BATCH:-1000}"
SIZE="${SIZE:-500}"
NDJSON_WORKERS="${NDJSON_WORKERS:-16}"
DURATION="${DURATION:-20s}"
WARMUP="${WARMUP:-2s}"
FSCK="${FSCK:-1}"
TARGET_NDJSON_RATIO=10

need_bin hammer keygen tidemark loadgen
[[ " $TARGETS " == *" conformance "* ]] && need_bin conformance-mysql
[[ "$FSCK" == 1 ]] && need_bin fsck
mysql_cli -e 'SELECT 1' >/dev/null || { echo "cannot reach MySQL at $MYSQL_ADDR as $MYSQL_USER" >&2; exit 1; }

bench_init
print_env "$@"
snapshot_tidemark
echo "mysql:       $MYSQL_ADDR, $(mysql_cli -N -e 'SELECT VERSION()'), innodb_buffer_pool_size $(mysql_cli -N -e 'SELECT @@innodb_buffer_pool_size'), innodb_flush_log_at_trx_commit $(mysql_cli -N -e 'SELECT @@innodb_flush_log_at_trx_commit')"
HAMMER_ARGS=(--num_writers="$WRITERS" --max_write_ops=1000000 --max_read_ops=0 --num_readers_random=0
  --num_readers_full=0 --show_ui=false --leaf_write_goal="$LEAVES" --max_runtime="$MAX_RUNTIME"
  --leaf_min_size="$LEAF_SIZE" --dup_chance="$DUP_CHANCE" --logtostderr)
# shellcheck disable=SC2206
HAMMER_ARGS+=(${HAMMER_FLAGS:-})
# shellcheck disable=SC2206
LG_ARGS=(--mode ndjson --batch "$BATCH" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" ${LOADGEN_FLAGS:-})
echo "runs:        $RUNS per contender, alternating ABBA; targets: $TARGETS"
echo "hammer:      $BIN/hammer --log_url http://127.0.0.1:PORT1/ [--write_log_url http://127.0.0.1:PORTi/ per frontend] --log_public_key VKEY ${HAMMER_ARGS[*]}"
echo "tidemark:    $BIN/tidemark log --mysql '$(mysql_dsn DB)' --data DIRi --listen 127.0.0.1:PORTi --key KEYFILE ${TIDEMARK_FLAGS:-}"
echo "conformance: $BIN/conformance-mysql --mysql_uri '$(mysql_dsn DB)' --init_schema_path $BIN/conformance-mysql-schema.sql --private_key_path KEYFILE --listen 127.0.0.1:PORT --publish_interval=1s ${CONFORMANCE_FLAGS:-}"
echo "loadgen:     $BIN/loadgen --url http://127.0.0.1:PORTi ${LG_ARGS[*]} --workers W (one per frontend, $NDJSON_WORKERS workers in all)"
echo "tmp:         $BENCH_TMP"
echo

declare -A RATES=() STEADY=() P50=() P99=()
FAILED=0

# start_frontends KIND F DSN DIR: starts F servers (one after the other: the first
# creates the tables) and sets PORTS and SPIDS. Returns non-zero if one did not start.
start_frontends() {
  local kind="$1" f="$2" dsn="$3" dir="$4" i
  PORTS=() SPIDS=()
  for i in $(seq 1 "$f"); do
    if ! start_mysql_server "$kind" "$dsn" "$dir/data$i" "$dir/log.key" "$dir/server$i.log"; then
      return 1
    fi
    PORTS+=("$SERVER_PORT") SPIDS+=("$SERVER_PID")
  done
}

stop_frontends() {
  local p
  for p in "${SPIDS[@]:-}"; do [[ -n "$p" ]] && stop_pid "$p"; done
  SPIDS=()
}

# one_run TARGET RUN_NO: prints one line and appends to RATES[TARGET] (and STEADY, P50, P99).
one_run() {
  local target="$1" n="$2" kind f dir db dsn fsck_status="" i
  case "$target" in
    tidemark-*) kind=tidemark f="${target#tidemark-}" ;;
    ndjson-*) kind=tidemark f="${target#ndjson-}" ;;
    conformance) kind=conformance f=1 ;;
    *) echo "unknown target $target" >&2; FAILED=1; return 0 ;;
  esac
  local rname="$target" more="\"frontends\":$f"
  [[ "$target" == conformance ]] && rname=conformance/mysql
  dir="$BENCH_TMP/$target-$n"
  db="tidemark_bench_$$_${target//-/_}_$n"
  mkdir -p "$dir"
  make_key "$dir/log"
  mysql_create_db "$db"
  dsn="$(mysql_dsn "$db")"
  if ! start_frontends "$kind" "$f" "$dsn" "$dir"; then
    echo "run $n $target: FAILED (a server did not start)"
    FAILED=1
    record mysql "$rname" "$([[ "$target" == ndjson-* ]] && echo events_per_sec || echo entries_per_sec)" "$([[ "$target" == ndjson-* ]] && echo events/s || echo entries/s)" nan "$n" "$more"
    stop_frontends; mysql_drop_db "$db"
    return 0
  fi
  local base="http://127.0.0.1:${PORTS[0]}" line=""
  if [[ "$target" == ndjson-* ]]; then
    # One loadgen per frontend, NDJSON_WORKERS split between them, all at once.
    local lpids=() w rem lrc=0 res events=0 errs=0 rate
    w=$(( NDJSON_WORKERS / f )) rem=$(( NDJSON_WORKERS % f ))
    for i in $(seq 0 $(( f - 1 ))); do
      "$BIN/loadgen" --url "http://127.0.0.1:${PORTS[$i]}" --workers $(( w + (i < rem ? 1 : 0) )) "${LG_ARGS[@]}" >"$dir/loadgen$((i + 1)).log" 2>&1 &
      lpids+=("$!"); BENCH_PIDS+=("$!")
    done
    for i in "${lpids[@]}"; do wait "$i" || lrc=$?; done
    local secs=""
    for i in $(seq 1 "$f"); do
      res="$(grep '^RESULT ' "$dir/loadgen$i.log" | tail -n 1 || true)"
      if [[ -z "$res" ]]; then lrc=1; continue; fi
      events=$(( events + $(result_field "$res" events) ))
      errs=$(( errs + $(result_field "$res" errors) ))
      secs="$(result_field "$res" seconds)"
      # batch latency: the first loadgen's (they all see the same server mix)
      if [[ $i == 1 ]]; then P50[$target]+="$(result_field "$res" p50_ms) "; P99[$target]+="$(result_field "$res" p99_ms) "; fi
    done
    if [[ $lrc -ne 0 ]]; then
      echo "run $n $target: FAILED (a loadgen exited $lrc)"
      for i in $(seq 1 "$f"); do echo "--- tail of $dir/loadgen$i.log"; tail -n 8 "$dir/loadgen$i.log" | cut -c1-300; done
      echo "--- tail of $dir/server1.log"; tail -n 12 "$dir/server1.log" | cut -c1-300
      FAILED=1
    fi
    rate="$(awk -v e="$events" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", e / s; else print "nan" }')"
    line="events=$events seconds=$secs events_per_sec=$rate errors=$errs"
    [[ $lrc -eq 0 ]] && RATES[$target]+="$rate "
    [[ $lrc -eq 0 ]] || rate=nan
    record mysql "$rname" events_per_sec events/s "$rate" "$n" "$more"
  else
    start_cp_watch "$base" "$dir/checkpoints.txt"
    local watch_pid="$WATCH_PID" hrc=0 hlog="$dir/hammer.log" wargs=()
    for i in "${PORTS[@]}"; do wargs+=(--write_log_url "http://127.0.0.1:$i/"); done
    "$BIN/hammer" --log_url "$base/" "${wargs[@]}" --log_public_key "$(cat "$dir/log.pub")" "${HAMMER_ARGS[@]}" >"$hlog" 2>&1 &
    local hpid=$!
    BENCH_PIDS+=("$hpid")
    wait "$hpid" || hrc=$?
    stop_pid "$watch_pid"
    local reached goal dur secs rate steady pushback errs
    reached="$(grep -o 'Reached tree size goal of [0-9]* after [^;]*' "$hlog" | tail -n 1 || true)"
    if [[ -z "$reached" ]]; then
      echo "run $n $target: FAILED (hammer exit $hrc, no 'Reached tree size goal' line)"
      echo "--- tail of $hlog"; tail -n 15 "$hlog" | cut -c1-300
      echo "--- tail of $dir/server1.log"; tail -n 15 "$dir/server1.log" | cut -c1-300
      FAILED=1
      record mysql "$rname" entries_per_sec entries/s nan "$n" "$more"
      stop_frontends; settle_disk "$dir"; mysql_drop_db "$db"
      return 0
    fi
    goal="$(awk '{print $6}' <<<"$reached")"
    dur="$(awk '{print $8}' <<<"$reached")"
    secs="$(go_duration_seconds "$dur")"
    rate="$(awk -v g="$goal" -v s="$secs" 'BEGIN { printf "%.0f", g / s }')"
    steady="$(steady_rate "$dir/checkpoints.txt" "$goal")"
    pushback="$( { grep -o '[0-9]* requests received pushback' "$hlog" || true; } | awk '{s += $1} END {print s + 0}')"
    errs="$(grep -c 'W.*x) ' "$hlog" || true)"
    line="entries=$goal seconds=$secs entries_per_sec=$rate steady_per_sec=$steady pushback=$pushback error_lines=$errs"
    RATES[$target]+="$rate "
    STEADY[$target]+="$steady "
    record mysql "$rname" entries_per_sec entries/s "$rate" "$n" "$more"
    record mysql "$rname" steady_per_sec entries/s "$steady" "$n" "$more"
  fi
  if [[ "$FSCK" == 1 ]]; then
    fsck_status="$(run_fsck "$base" "$dir/log.pub" "$dir/fsck.log")" || FAILED=1
  fi
  local dbmb
  dbmb="$(awk -v b="$(mysql_db_bytes "$db")" 'BEGIN { printf "%.0f", b / 1048576 }')"
  stop_frontends
  settle_disk "$dir"
  mysql_drop_db "$db"
  printf 'run %d %-11s %s db_mib_est=%s loadavg=%s%s\n' "$n" "$target" "$line" "$dbmb" "$(cut -d' ' -f1 /proc/loadavg)" "$fsck_status"
}

read -r -a TLIST <<<"$TARGETS"
for n in $(seq 1 "$RUNS"); do
  order=("${TLIST[@]}")
  if (( n % 2 == 0 )); then
    order=()
    for (( i = ${#TLIST[@]} - 1; i >= 0; i-- )); do order+=("${TLIST[$i]}"); done
  fi
  for t in "${order[@]}"; do
    one_run "$t" "$n"
  done
done

# spread "a b c": min-max of the non-nan words
spread() {
  { tr ' ' '\n' <<<"$1" | grep -v -e '^$' -e '^nan$' || true; } | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END { if (NR) printf "%s-%s", lo, hi; else print "nan" }'
}

echo
echo "== summary (noisy 2-core machine shared with other work: compare only within this run)"
declare -A MED=()
printf '%-12s %-14s %-14s %-20s %-14s %s\n' contender "median/s" "spread" "steady median/s" "ratio" runs
for t in "${TLIST[@]}"; do
  MED[$t]="$(median_of "${RATES[$t]:-}")"
  r="" 
  case "$t" in
    tidemark-*) [[ -n "${MED[conformance]:-}${RATES[conformance]:-}" ]] && r="$(ratio "${MED[$t]}" "$(median_of "${RATES[conformance]:-}")") of conformance" ;;
    ndjson-*) r="$(ratio "${MED[$t]}" "$(median_of "${RATES[tidemark-${t#ndjson-}]:-}")") of tidemark-${t#ndjson-} /add" ;;
  esac
  st="-"; [[ "$t" != ndjson-* ]] && st="$(median_of "${STEADY[$t]:-}")"
  printf '%-12s %-14s %-14s %-20s %-14s %s\n' "$t" "${MED[$t]}" "$(spread "${RATES[$t]:-}")" "$st" "${r:--}" "${RATES[$t]:-none}"
done
for t in "${TLIST[@]}"; do
  [[ "$t" == ndjson-* ]] && echo "$t batch latency (first loadgen): p50 $(median_of "${P50[$t]:-}") ms, p99 $(median_of "${P99[$t]:-}") ms (medians)"
done
res="RESULT bench=mysql runs=$RUNS leaves=$LEAVES writers=$WRITERS batch=$BATCH"
for t in "${TLIST[@]}"; do res+=" ${t//-/_}=${MED[$t]}"; done
if [[ -n "${MED[tidemark-1]:-}" && -n "${MED[conformance]:-}" ]]; then
  res+=" ratio_tidemark1_conformance=$(ratio "${MED[tidemark-1]}" "${MED[conformance]}")"
fi
for f in 1 3; do
  if [[ -n "${MED[ndjson-$f]:-}" && -n "${MED[tidemark-$f]:-}" ]]; then
    q="$(ratio "${MED[ndjson-$f]}" "${MED[tidemark-$f]}")"
    res+=" ratio_ndjson${f}_add${f}=$q"
    echo "ndjson-$f / tidemark-$f: $q ($(awk -v r="$q" -v t="$TARGET_NDJSON_RATIO" 'BEGIN { print (r + 0 >= t) ? "meets" : "BELOW" }') the ${TARGET_NDJSON_RATIO}x target)"
  fi
done
echo "$res"
exit "$FAILED"
