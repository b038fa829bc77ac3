#!/usr/bin/env bash
# POST /add throughput of `tidemark log` against Tessera's own conformance/posix
# server (v1.0.4), both under Tessera's hammer with the same flags.
#
# Runs alternate (tidemark first on odd runs, conformance first on even runs),
# each on a fresh data directory and a fresh key. A run's rate is
# entries / seconds taken from the hammer's own log line
#   "Reached tree size goal of N after D; exiting"
# (the hammer checks the tree size once a second, so D is rounded up to about
# a second, and its writers only start after the first tick of its throttle, a
# second in: D overstates the time by 1-3 s, so keep runs 10-20 s long).
# Beside it, each run also reports a steady rate: the script polls /checkpoint
# every 0.1 s and divides the growth between the first checkpoints at or above
# 10% and 90% of the goal by the time between them (start-up and the tail left out).
#
# Environment (defaults in brackets):
#   RUNS [5]            runs per server
#   LEAVES [150000]     --leaf_write_goal of each run
#   WRITERS [256]       --num_writers
#   LEAF_SIZE [256]     --leaf_min_size (the hammer's leaves are hex text)
#   DUP_CHANCE [0]      --dup_chance (the hammer's default is 0.1; 0 keeps both servers writing every request)
#   MAX_RUNTIME [180s]  --max_runtime: a run that takes longer fails
#   DURATION            when set (e.g. 15s), time-boxed runs instead of a leaf goal: the hammer
#                       runs without --leaf_write_goal for WARMUP + DURATION, and a run's rate is
#                       the growth of the published checkpoint's size over DURATION after WARMUP
#   WARMUP [3s]         with DURATION: the unmeasured start
#   HAMMER_FLAGS        more hammer flags
#   TIDEMARK_FLAGS      more `tidemark log` flags (e.g. batching)
#   CONFORMANCE_FLAGS   more conformance/posix flags
#   TARGETS ["tidemark conformance"]  which servers to run (e.g. TARGETS=conformance)
#   FSCK [1]            run Tessera's fsck over each log after its run
#   KEEP_TMP [0]        keep the data directories and logs
#   RESULTS             append each run's figures to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-5}"
LEAVES="${LEAVES:-150000}"
WRITERS="${WRITERS:-256}"
LEAF_SIZE="${LEAF_SIZE:-256}"
DUP_CHANCE="${DUP_CHANCE:-0}"
MAX_RUNTIME="${MAX_RUNTIME:-180s}"
TARGETS="${TARGETS:-tidemark conformance}"
FSCK="${FSCK:-1}"
DURATION="${DURATION:-}"
WARMUP="${WARMUP:-3s}"

need_bin hammer keygen
[[ " $TARGETS " == *" tidemark "* ]] && need_bin tidemark
[[ " $TARGETS " == *" conformance "* ]] && need_bin posix
[[ "$FSCK" == 1 ]] && need_bin fsck

bench_init
print_env "$@"
snapshot_tidemark
HAMMER_ARGS=(--num_writers="$WRITERS" --max_write_ops=1000000 --max_read_ops=0 --num_readers_random=0
  --num_readers_full=0 --show_ui=false --leaf_min_size="$LEAF_SIZE" --dup_chance="$DUP_CHANCE" --logtostderr)
if [[ -n "$DURATION" ]]; then
  DURATION_S="$(go_duration_seconds "$DURATION")"
  WARMUP_S="$(go_duration_seconds "$WARMUP")"
  # The hammer outlives the measured window; the script stops it.
  HAMMER_ARGS+=(--max_runtime="$(awk -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN { printf "%ds", d + w + 30 }')")
else
  HAMMER_ARGS+=(--leaf_write_goal="$LEAVES" --max_runtime="$MAX_RUNTIME")
fi
# shellcheck disable=SC2206
HAMMER_ARGS+=(${HAMMER_FLAGS:-})
echo "runs:        $RUNS per server, alternating; targets: $TARGETS"
[[ -n "$DURATION" ]] && echo "measured:    checkpoint growth over $DURATION after $WARMUP (no leaf goal)"
echo "hammer:      $BIN/hammer --log_url http://127.0.0.1:PORT/ --log_public_key VKEY ${HAMMER_ARGS[*]}"
echo "tidemark:    $BIN/tidemark log --data DIR --listen 127.0.0.1:PORT --key KEYFILE ${TIDEMARK_FLAGS:-}"
echo "conformance: $BIN/posix --storage_dir DIR --listen 127.0.0.1:PORT --private_key KEYFILE ${CONFORMANCE_FLAGS:-}"
echo "tmp:         $BENCH_TMP"
echo

declare -A RATES=() STEADY=()
FAILED=0

# contender TARGET: its name in RESULTS.
contender() { if [[ "$1" == conformance ]]; then echo conformance/posix; else echo "$1"; fi; }

# cp_size URL: the size in the checkpoint published at URL ("" if none).
cp_size() {
  curl -fsS --max-time 2 "$1/checkpoint" 2>/dev/null | sed -n 2p || true
}

# duration_run TARGET RUN_NO DIR PORT HAMMER_PID: the time-boxed run (DURATION set): the
# growth of the published checkpoint over DURATION after WARMUP, then the hammer and the
# server are stopped (and fsck run). Prints one line and appends to RATES[TARGET].
duration_run() {
  local target="$1" n="$2" dir="$3" port="$4" hpid="$5" url s0 s1 t0 t1 rate fsck_status=""
  url="http://127.0.0.1:$port"
  sleep "$WARMUP_S"
  s0="$(cp_size "$url")"; t0="$(date +%s.%N)"
  sleep "$DURATION_S"
  s1="$(cp_size "$url")"; t1="$(date +%s.%N)"
  local alive=1
  kill -0 "$hpid" 2>/dev/null || alive=0
  stop_pid "$hpid"
  stop_pid "$WATCH_PID"
  if [[ -z "$s0" || -z "$s1" || $alive == 0 ]]; then
    echo "run $n $target: FAILED (hammer alive=$alive, checkpoint sizes '$s0' '$s1')"
    echo "--- tail of $dir/hammer.log"; tail -n 15 "$dir/hammer.log" | cut -c1-300
    FAILED=1
    stop_pid "$SERVER_PID"
    return 0
  fi
  rate="$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) }')"
  if [[ "$FSCK" == 1 ]]; then
    fsck_status="$(run_fsck "$url" "$dir/log.pub" "$dir/fsck.log")" || FAILED=1
  fi
  local errs
  errs="$(grep -c 'W.*x) ' "$dir/hammer.log" || true)"
  stop_pid "$SERVER_PID"
  settle_disk "$dir/data"
  RATES[$target]+="$rate "
  record add-vs-conformance "$(contender "$target")" entries_per_sec entries/s "$rate" "$n" "\"duration\":\"$DURATION\""
  printf 'run %d %-11s entries=%s seconds=%.3f entries_per_sec=%s error_lines=%s loadavg=%s%s\n' \
    "$n" "$target" "$((s1 - s0))" "$(awk -v t0="$t0" -v t1="$t1" 'BEGIN { print t1 - t0 }')" "$rate" "$errs" "$(cut -d' ' -f1 /proc/loadavg)" "$fsck_status"
}

# one_run TARGET RUN_NO: prints one line and appends the rate to RATES[TARGET].
one_run() {
  local target="$1" n="$2" dir port key vkey slog hlog line goal dur secs rate fsck_status=""
  dir="$BENCH_TMP/$target-$n"
  mkdir -p "$dir"
  make_key "$dir/log"
  key="$dir/log.key"
  vkey="$(cat "$dir/log.pub")"
  slog="$dir/server.log"
  hlog="$dir/hammer.log"
  if ! start_server "$target" "$dir/data" "$key" "$slog"; then
    echo "run $n $target: FAILED (the server did not start)"
    FAILED=1
    record add-vs-conformance "$(contender "$target")" entries_per_sec entries/s nan "$n"
    stop_pid "$SERVER_PID"
    return 0
  fi
  port="$SERVER_PORT"
  start_cp_watch "http://127.0.0.1:$port" "$dir/checkpoints.txt"
  local watch_pid="$WATCH_PID" hrc=0
  # In the background and waited for, so that a signal to this script is handled at once.
  "$BIN/hammer" --log_url "http://127.0.0.1:$port/" --log_public_key "$vkey" "${HAMMER_ARGS[@]}" >"$hlog" 2>&1 &
  local hpid=$!
  BENCH_PIDS+=("$hpid")
  if [[ -n "$DURATION" ]]; then
    duration_run "$target" "$n" "$dir" "$port" "$hpid"
    return 0
  fi
  wait "$hpid" || hrc=$?
  stop_pid "$watch_pid"
  line="$(grep -o 'Reached tree size goal of [0-9]* after [^;]*' "$hlog" | tail -n 1 || true)"
  if [[ -z "$line" ]]; then
    echo "run $n $target: FAILED (hammer exit $hrc, no 'Reached tree size goal' line)"
    echo "--- tail of $hlog"; tail -n 15 "$hlog" | cut -c1-300
    echo "--- tail of $slog"; tail -n 15 "$slog" | cut -c1-300
    FAILED=1
    record add-vs-conformance "$(contender "$target")" entries_per_sec entries/s nan "$n"
    stop_pid "$SERVER_PID"
    return 0
  fi
  goal="$(awk '{print $6}' <<<"$line")"
  dur="$(awk '{print $8}' <<<"$line")"
  secs="$(go_duration_seconds "$dur")"
  rate="$(awk -v g="$goal" -v s="$secs" 'BEGIN { printf "%.0f", g / s }')"
  if [[ "$FSCK" == 1 ]]; then
    local flog="$dir/fsck.log"
    # fsck exits 0 even when the check fails: read its log.
    if "$BIN/fsck" --storage_url "http://127.0.0.1:$port/" --public_key "$dir/log.pub" --N 4 --ui=false >"$flog" 2>&1 \
      && ! grep -q 'fsck failed' "$flog"; then
      fsck_status=" fsck=ok"
    else
      fsck_status=" fsck=FAILED($(grep -m1 -o 'fsck failed.*' "$flog" | cut -c1-200))"
      FAILED=1
    fi
  fi
  local pushback
  pushback="$( { grep -o '[0-9]* requests received pushback' "$hlog" || true; } | awk '{s += $1} END {print s + 0}')"
  local errs
  errs="$(grep -c 'W.*x) ' "$hlog" || true)"
  stop_pid "$SERVER_PID"
  local steady
  steady="$(steady_rate "$dir/checkpoints.txt" "$goal")"
  RATES[$target]+="$rate "
  STEADY[$target]+="$steady "
  record add-vs-conformance "$(contender "$target")" entries_per_sec entries/s "$rate" "$n" "\"leaves\":$goal"
  record add-vs-conformance "$(contender "$target")" steady_per_sec entries/s "$steady" "$n" "\"leaves\":$goal"
  printf 'run %d %-11s entries=%s seconds=%s entries_per_sec=%s steady_per_sec=%s pushback=%s error_lines=%s loadavg=%s%s\n' \
    "$n" "$target" "$goal" "$secs" "$rate" "$steady" "$pushback" "$errs" "$(cut -d' ' -f1 /proc/loadavg)" "$fsck_status"
}

read -r -a TLIST <<<"$TARGETS"
for n in $(seq 1 "$RUNS"); do
  order=("${TLIST[@]}")
  if (( n % 2 == 0 )) && (( ${#TLIST[@]} == 2 )); then order=("${TLIST[1]}" "${TLIST[0]}"); fi
  for t in "${order[@]}"; do
    one_run "$t" "$n"
  done
done

echo
if [[ -n "$DURATION" ]]; then
  echo "== medians (entries/s, checkpoint growth over $DURATION after $WARMUP, hammer, $WRITERS writers, leaves of >= $LEAF_SIZE bytes, dup_chance $DUP_CHANCE)"
else
  echo "== medians (entries/s, hammer, $WRITERS writers, $LEAVES leaves of >= $LEAF_SIZE bytes, dup_chance $DUP_CHANCE)"
fi
declare -A MED=() SMED=()
for t in "${TLIST[@]}"; do
  MED[$t]="$( { tr ' ' '\n' <<<"${RATES[$t]:-}" | grep -v -e '^$' -e nan || true; } | median)"
  SMED[$t]="$( { tr ' ' '\n' <<<"${STEADY[$t]:-}" | grep -v -e '^$' -e nan || true; } | median)"
  if [[ -n "$DURATION" ]]; then
    echo "$t: median ${MED[$t]} (runs: ${RATES[$t]:-none}; spread $(tr ' ' '\n' <<<"${RATES[$t]:-}" | grep -v '^$' | sort -g | sed -n '1p;$p' | paste -sd-))"
  else
    echo "$t: median ${MED[$t]} (runs: ${RATES[$t]:-none}); steady 10%->90% median ${SMED[$t]} (runs: ${STEADY[$t]:-none})"
  fi
done
if [[ -n "$DURATION" && -n "${MED[tidemark]:-}" && -n "${MED[conformance]:-}" ]]; then
  echo "ratio tidemark/conformance: $(ratio "${MED[tidemark]}" "${MED[conformance]}") (checkpoint growth over $DURATION)"
  echo "RESULT bench=add-vs-conformance tidemark=${MED[tidemark]} conformance=${MED[conformance]} ratio=$(ratio "${MED[tidemark]}" "${MED[conformance]}") runs=$RUNS duration=$DURATION warmup=$WARMUP writers=$WRITERS"
elif [[ -n "${MED[tidemark]:-}" && -n "${MED[conformance]:-}" ]]; then
  echo "ratio tidemark/conformance: $(ratio "${MED[tidemark]}" "${MED[conformance]}") (hammer's figure); $(ratio "${SMED[tidemark]}" "${SMED[conformance]}") (steady)"
  echo "RESULT bench=add-vs-conformance tidemark=${MED[tidemark]} conformance=${MED[conformance]} ratio=$(ratio "${MED[tidemark]}" "${MED[conformance]}") tidemark_steady=${SMED[tidemark]} conformance_steady=${SMED[conformance]} steady_ratio=$(ratio "${SMED[tidemark]}" "${SMED[conformance]}") runs=$RUNS leaves=$LEAVES writers=$WRITERS"
fi
exit "$FAILED"
