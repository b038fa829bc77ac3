#!/usr/bin/env bash
# Search on `tidemark log` (internal/search, GET /v1/search), two phases:
#
#   latency  a log of N events (loadgen NDJSON with actors spread over ACTORS
#            values user-<n>, actions over ACTIONS, resources over RESOURCES),
#            written with --search=false; then the log is restarted with search
#            on and the index is built from the whole log: the time until
#            complete_to reaches N (entries/s) and the index's size on disk.
#            Then bench/searchload (a separate process) runs selective queries
#            of several kinds at CONCURRENCY (p50/p90/p99/max per kind), with a
#            CPU profile of the log during the first PROFILE_SECONDS, then the
#            same queries straight against the SQLite file and their plans.
#            Target: p99 < 100 ms for a selective search over 1,000,000 entries.
#   ingest   ABBA: `tidemark log --search=true` against `--search=false` under
#            bench/ndjson.sh's load (BATCH events of SIZE bytes per request,
#            WORKERS requests in flight, DURATION after WARMUP), a fresh log per
#            run; for the runs with search, how far the index lagged when the
#            load stopped and how long it took to catch up.
#
# Environment (defaults in brackets):
#   PHASES ["latency ingest"]
#   N [1000000]         events in the latency phase's log
#   ACTORS [10000] ACTIONS [50] RESOURCES [1000]   loadgen --actors/--actions/--resources
#   QUERIES [2000]      actor queries per concurrency; MIX [500] queries of each other kind
#   CONCURRENCY [1,4]   searchload concurrencies, in this order
#   KINDS ["actor,actor+action,resource*,word,window,id,action"]  (see bench/searchload)
#   WINDOWS [1m,1s,50ms]  since/until window widths
#   LIMIT [50]          limit of every query
#   ANALYZE [1]         then ANALYZE the index and run the SQL-only and HTTP queries again (bench/searchload --analyze)
#   PROFILE [1]         CPU profile of the log during the queries (bench/out/search-cpu.pprof)
#   PROFILE_SECONDS [30]
#   BUILD_TIMEOUT [3600]  seconds to wait for the index to be built
#   RUNS [3]            ingest runs per contender (ABBA: run i is on,off for odd i, off,on for even)
#   BATCH [1000] WORKERS [16] SIZE [500] DURATION [15s] WARMUP [2s]
#   CATCHUP_TIMEOUT [900]  seconds to wait for the index to catch up after a loaded run
#   LOADGEN_FLAGS       more loadgen flags (both phases)
#   TIDEMARK_FLAGS      more `tidemark log` flags (both phases)
#   KEEP_TMP [0]        keep data directories and logs
#   RESULTS             append the ingest phase's runs (comparison search-ingest, contenders
#                       on and off) to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PHASES="${PHASES:-latency ingest}"
N="${N:-1000000}"
ACTORS="${ACTORS:-10000}"
ACTIONS="${ACTIONS:-50}"
RESOURCES="${RESOURCES:-1000}"
QUERIES="${QUERIES:-2000}"
MIX="${MIX:-500}"
CONCURRENCY="${CONCURRENCY:-1,4}"
KINDS="${KINDS:-actor,actor+action,resource*,word,window,id,action}"
WINDOWS="${WINDOWS:-1m,1s,50ms}"
LIMIT="${LIMIT:-50}"
ANALYZE="${ANALYZE:-1}"
PROFILE="${PROFILE:-1}"
PROFILE_SECONDS="${PROFILE_SECONDS:-30}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-3600}"
RUNS="${RUNS:-3}"
BATCH="${BATCH:-1000}"
WORKERS="${WORKERS:-16}"
SIZE="${SIZE:-500}"
DURATION="${DURATION:-15s}"
WARMUP="${WARMUP:-2s}"
CATCHUP_TIMEOUT="${CATCHUP_TIMEOUT:-900}"
OUT="$BENCH_DIR/out"
BASE_FLAGS="${TIDEMARK_FLAGS:-}"

need_bin loadgen keygen tidemark
mkdir -p "$OUT"
echo "+ go build -o $BIN/searchload ./bench/searchload"
(cd "$REPO_DIR" && go build -o "$BIN/searchload" ./bench/searchload)

bench_init
print_env "$@"
snapshot_tidemark
echo "phases:   $PHASES"
echo "tmp:      $BENCH_TMP"
echo

# metric ADMIN NAME: the value of an unlabelled metric on ADMIN/metrics ("" if absent).
metric() {
  curl -fsS --max-time 5 "$1/metrics" 2>/dev/null | awk -v n="$2" '$1 == n { printf "%.0f\n", $2 }' || true
}
# complete_to URL: the search index's complete_to ("" if search does not answer).
complete_to() {
  curl -fsS --max-time 10 "$1/v1/search?actor=bench-nobody&limit=1" 2>/dev/null | sed -n 's/.*"complete_to":\([0-9]*\).*/\1/p' || true
}
# cp_size URL: the published checkpoint's tree size.
cp_size() {
  curl -fsS --max-time 5 "$1/checkpoint" 2>/dev/null | sed -n 2p || true
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f\n", b - a }'; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# start_log DATA KEY LOGFILE SEARCH(true|false): tidemark log with an admin listener;
# sets SERVER_PID, URL and ADMIN.
start_log() {
  local ap
  ap="$(free_port)"
  TIDEMARK_FLAGS="$BASE_FLAGS --search=$4 --admin-listen 127.0.0.1:$ap" start_server tidemark "$1" "$2" "$3"
  URL="http://127.0.0.1:$SERVER_PORT"
  ADMIN="http://127.0.0.1:$ap"
  wait_ready "$ADMIN/healthz" "$SERVER_PID" 30
}

SPREAD=(--actors "$ACTORS" --actions "$ACTIONS" --resources "$RESOURCES")
FAILED=0

# ---------------------------------------------------------------- latency
if [[ " $PHASES " == *" latency "* ]]; then
  echo "== latency: a log of $N events, the index built after, then queries"
  dir="$BENCH_TMP/latency"
  mkdir -p "$dir"
  make_key "$dir/log"
  start_log "$dir/data" "$dir/log.key" "$dir/server-load.log" false
  # shellcheck disable=SC2206
  LG=(--url "$URL" --mode ndjson --batch "$BATCH" --workers "$WORKERS" --size "$SIZE" --count "$N" --warmup 0 "${SPREAD[@]}" ${LOADGEN_FLAGS:-})
  echo "+ tidemark log --data DIR --listen ... --key KEY $BASE_FLAGS --search=false --admin-listen ..."
  echo "+ loadgen ${LG[*]}"
  t0="$(now)"
  "$BIN/loadgen" "${LG[@]}" >"$dir/loadgen.log" 2>&1 || { echo "loadgen failed:"; tail -n 12 "$dir/loadgen.log"; exit 1; }
  res="$(grep '^RESULT ' "$dir/loadgen.log" | tail -n 1)"
  echo "load: $(result_field "$res" events) events in $(result_field "$res" seconds) s = $(result_field "$res" events_per_sec) events/s (search off; loadavg $(loadavg))"
  for _ in $(seq 1 600); do [[ "$(cp_size "$URL")" -ge "$N" ]] 2>/dev/null && break; sleep 0.1; done
  size="$(cp_size "$URL")"
  echo "tree size $size after $(elapsed "$t0") s"
  stop_pid "$SERVER_PID"
  sync

  echo "+ tidemark log (same data) $BASE_FLAGS --search=true --admin-listen ..."
  t0="$(now)"
  start_log "$dir/data" "$dir/log.key" "$dir/server.log" true
  built="" last_print="$(now)"
  while :; do
    ct="$(complete_to "$URL")"
    if [[ -n "$ct" && "$ct" -ge "$size" ]]; then built="$(elapsed "$t0")"; break; fi
    if awk -v a="$last_print" -v b="$(now)" 'BEGIN { exit !(b - a >= 30) }'; then
      echo "  building: complete_to=${ct:-?} of $size after $(elapsed "$t0") s (loadavg $(loadavg))"
      last_print="$(now)"
    fi
    if awk -v a="$t0" -v b="$(now)" -v t="$BUILD_TIMEOUT" 'BEGIN { exit !(b - a >= t) }'; then
      echo "index build: TIMED OUT after $BUILD_TIMEOUT s at complete_to=$ct"; FAILED=1; break
    fi
    sleep 0.5
  done
  if [[ -n "$built" ]]; then
    rate="$(awk -v n="$size" -v s="$built" 'BEGIN { printf "%.0f", n / s }')"
    echo "index build: $size entries in $built s (from the restart, incl. start-up) = $rate entries/s (loadavg $(loadavg))"
  fi
  st="$dir/data/.tidemark"
  db_b="$(stat -c %s "$st/search.db" 2>/dev/null || echo 0)"
  wal_b="$(stat -c %s "$st/search.db-wal" 2>/dev/null || echo 0)"
  data_b="$(du -sb "$dir/data" | cut -f1)"
  echo "index on disk: search.db $(awk -v b="$db_b" 'BEGIN { printf "%.1f MiB", b / 1048576 }') + WAL $(awk -v b="$wal_b" 'BEGIN { printf "%.1f MiB", b / 1048576 }') = $(awk -v b="$db_b" -v w="$wal_b" -v n="$size" 'BEGIN { printf "%.0f B per entry", (b + w) / n }'); whole data dir $(awk -v b="$data_b" 'BEGIN { printf "%.1f MiB", b / 1048576 }')"
  echo "RESULT bench=search-build entries=$size seconds=${built:-nan} entries_per_sec=${rate:-nan} index_bytes=$((db_b + wal_b)) data_bytes=$data_b"

  if [[ "$PROFILE" == 1 ]]; then
    curl -fsS --max-time $((PROFILE_SECONDS + 30)) -o "$OUT/search-cpu.pprof" "$ADMIN/debug/pprof/profile?seconds=$PROFILE_SECONDS" &
    ppid=$!
    BENCH_PIDS+=("$ppid")
  fi
  SL=(--url "$URL" --actors "$ACTORS" --queries "$QUERIES" --mix "$MIX" --concurrency "$CONCURRENCY" --kinds "$KINDS" --windows "$WINDOWS" --limit "$LIMIT" --db "$st/search.db" --analyze="$ANALYZE")
  echo "+ searchload ${SL[*]}"
  if "$BIN/searchload" "${SL[@]}" | tee "$dir/searchload.log"; then :; else echo "searchload FAILED"; FAILED=1; fi
  if [[ "$PROFILE" == 1 ]]; then
    wait "$ppid" 2>/dev/null || true
    if [[ -s "$OUT/search-cpu.pprof" ]]; then
      cp "$TIDEMARK_BIN" "$OUT/search-tidemark.bin"
      echo
      echo "== CPU profile of the log over the first ${PROFILE_SECONDS} s of queries (concurrency ${CONCURRENCY%%,*}): $OUT/search-cpu.pprof"
      echo "+ go tool pprof -top -nodecount=30 $OUT/search-tidemark.bin $OUT/search-cpu.pprof"
      go tool pprof -top -nodecount=30 "$OUT/search-tidemark.bin" "$OUT/search-cpu.pprof" 2>/dev/null | sed -n '1,40p'
      echo "(cumulative:)"
      go tool pprof -top -cum -nodecount=30 "$OUT/search-tidemark.bin" "$OUT/search-cpu.pprof" 2>/dev/null | sed -n '6,40p'
    fi
  fi
  stop_pid "$SERVER_PID"
  settle_disk "$dir/data"
  echo
fi

# ---------------------------------------------------------------- ingest
if [[ " $PHASES " == *" ingest "* ]]; then
  # shellcheck disable=SC2206
  LG=(--mode ndjson --batch "$BATCH" --workers "$WORKERS" --size "$SIZE" --duration "$DURATION" --warmup "$WARMUP" ${LOADGEN_FLAGS:-})
  echo "== ingest: --search=true against --search=false, ABBA, $RUNS runs each"
  echo "tidemark: tidemark log --data DIR --listen 127.0.0.1:PORT --key KEYFILE $BASE_FLAGS --search=true|false --admin-listen 127.0.0.1:PORT2"
  echo "loadgen:  loadgen --url URL ${LG[*]}"
  declare -A RATES=() P50=() P99=()
  LAGS="" CATCHUPS=""
  for n in $(seq 1 "$RUNS"); do
    order="true false"
    (( n % 2 == 0 )) && order="false true"
    for s in $order; do
      dir="$BENCH_TMP/ingest-$s-$n"
      mkdir -p "$dir"
      make_key "$dir/log"
      if ! start_log "$dir/data" "$dir/log.key" "$dir/server.log" "$s"; then
        echo "run $n search=$s: FAILED (the server did not start)"; FAILED=1; stop_pid "$SERVER_PID"
        record search-ingest "$([[ $s == true ]] && echo on || echo off)" events_per_sec events/s nan "$n"; continue
      fi
      lrc=0
      "$BIN/loadgen" --url "$URL" "${LG[@]}" >"$dir/loadgen.log" 2>&1 || lrc=$?
      res="$(grep '^RESULT ' "$dir/loadgen.log" | tail -n 1 || true)"
      if [[ $lrc -ne 0 || -z "$res" ]]; then
        echo "run $n search=$s: FAILED (loadgen exit $lrc)"; tail -n 12 "$dir/loadgen.log"; FAILED=1
        record search-ingest "$([[ $s == true ]] && echo on || echo off)" events_per_sec events/s nan "$n"
        stop_pid "$SERVER_PID"; settle_disk "$dir/data"; continue
      fi
      RATES[$s]+="$(result_field "$res" events_per_sec) "
      record search-ingest "$([[ $s == true ]] && echo on || echo off)" events_per_sec events/s "$(result_field "$res" events_per_sec)" "$n"
      P50[$s]+="$(result_field "$res" p50_ms) "
      P99[$s]+="$(result_field "$res" p99_ms) "
      extra=""
      if [[ "$s" == true ]]; then
        t0="$(now)"
        cp="$(cp_size "$URL")" ct="$(complete_to "$URL")" lagm="$(metric "$ADMIN" tidemark_search_lag_entries)"
        lag=$(( ${cp:-0} - ${ct:-0} ))
        caught=""
        while :; do
          cp2="$(cp_size "$URL")" ct2="$(complete_to "$URL")"
          if [[ -n "$ct2" && -n "$cp2" && "$ct2" -ge "$cp2" ]]; then caught="$(elapsed "$t0")"; break; fi
          if awk -v a="$t0" -v b="$(now)" -v t="$CATCHUP_TIMEOUT" 'BEGIN { exit !(b - a >= t) }'; then break; fi
          sleep 0.5
        done
        LAGS+="$lag "
        record search-ingest on lag_entries entries "$lag" "$n"
        record search-ingest on catchup_seconds s "${caught:-nan}" "$n"
        CATCHUPS+="${caught:-nan} "
        extra=" | at the end: checkpoint $cp, complete_to $ct, lag $lag entries (metric $lagm); caught up ${caught:-NOT within $CATCHUP_TIMEOUT} s later ($(awk -v l="$lag" -v s="${caught:-0}" 'BEGIN { if (s > 0) printf "%.0f entries/s", l / s; else print "-" }'))"
      fi
      echo "run $n search=$s (loadavg $(loadavg)): events_per_sec=$(result_field "$res" events_per_sec) p50_ms=$(result_field "$res" p50_ms) p99_ms=$(result_field "$res" p99_ms) errors=$(result_field "$res" errors) retries=$(result_field "$res" retries)$extra"
      stop_pid "$SERVER_PID"
      settle_disk "$dir/data"
    done
  done
  echo
  spread_of() { tr ' ' '\n' <<<"$1" | grep -v -e '^$' -e '^nan$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
  mon="$(median_of "${RATES[true]:-}")" moff="$(median_of "${RATES[false]:-}")"
  echo "== search on:  median $mon events/s (spread $(spread_of "${RATES[true]:-}"); runs: ${RATES[true]:-none}); batch p50 $(median_of "${P50[true]:-}") ms, p99 $(median_of "${P99[true]:-}") ms"
  echo "== search off: median $moff events/s (spread $(spread_of "${RATES[false]:-}"); runs: ${RATES[false]:-none}); batch p50 $(median_of "${P50[false]:-}") ms, p99 $(median_of "${P99[false]:-}") ms"
  echo "== on/off: $(ratio "$mon" "$moff"); index lag when the load stopped: median $(median_of "$LAGS") entries (runs: $LAGS); caught up after median $(median_of "$CATCHUPS") s (runs: $CATCHUPS)"
  echo "RESULT bench=search-ingest on_events_per_sec=$mon off_events_per_sec=$moff ratio=$(ratio "$mon" "$moff") lag_end=$(median_of "$LAGS") catchup_s=$(median_of "$CATCHUPS") runs=$RUNS duration=$DURATION"
fi
exit "$FAILED"
