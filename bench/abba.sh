#!/usr/bin/env bash
# Two tidemark binaries (or two sets of flags) under one load, alternated ABBA:
# pair 1 runs A then B, pair 2 B then A, and so on, each run on a fresh data
# directory and key. For comparing a change against its parent on a noisy
# machine: prints every run with the load average, each side's median and
# spread, the ratio of the medians and the median of the per-pair ratios;
# and, less disturbed by other work on the machine than a rate, the server's
# CPU time (user + system, /proc) per entry it logged.
#
#   bench/abba.sh BIN_A BIN_B
#
# Environment (defaults in brackets):
#   LOAD [ndjson]      ndjson (loadgen --mode ndjson --batch 1000 --workers 16 --size 500, as ndjson.sh),
#                      k8s (k8sload --batch 400 --workers 16, as k8s.sh), events (loadgen --mode events
#                      --workers 256 --size 500) or add (Tessera's hammer, 256 writers, no duplicates, as
#                      add-vs-conformance.sh: the checkpoint's growth over DURATION)
#   PAIRS [4]          AB/BA pairs
#   DURATION [10s]     measured time per run
#   WARMUP [2s]        unmeasured start
#   FLAGS_A, FLAGS_B   `tidemark log` flags for each side (besides TIDEMARK_FLAGS, for both)
#   KEEP_TMP [0]       keep data directories and logs
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -ne 2 ]]; then
  echo "usage: bench/abba.sh BIN_A BIN_B (the same binary twice, with FLAGS_A and FLAGS_B, compares flags)" >&2
  exit 2
fi
LOAD="${LOAD:-ndjson}"
PAIRS="${PAIRS:-4}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
case "$LOAD" in
  ndjson | events) need_bin loadgen keygen ;;
  k8s) need_bin k8sload keygen ;;
  add) need_bin hammer keygen ;;
  *) echo "LOAD must be ndjson, k8s, events or add" >&2; exit 2 ;;
esac

bench_init
print_env "$@"
declare -A TM=([A]="$BENCH_TMP/tidemark-A" [B]="$BENCH_TMP/tidemark-B")
cp "$1" "${TM[A]}"
cp "$2" "${TM[B]}"
for s in A B; do
  echo "$s: $(go version -m "${TM[$s]}" 2>/dev/null | awk '$2 ~ /^vcs\.(revision|modified)=/ {printf "%s ", $2}')sha256 $(sha256sum "${TM[$s]}" | cut -c1-16) flags: ${TIDEMARK_FLAGS:-} $(eval echo "\${FLAGS_$s:-}")"
done
echo "load: $LOAD, $PAIRS pairs, $DURATION after $WARMUP per run"
echo

DURATION_S="$(go_duration_seconds "$DURATION")"
WARMUP_S="$(go_duration_seconds "$WARMUP")"
declare -A RATES=() CPUS=()
FAILED=0
PAIR_RATIOS=""
CPU_RATIOS=""

# one_run SIDE N: prints one line, sets LAST_RATE ("" on failure).
one_run() {
  local side="$1" n="$2" dir port flags lrc=0 rate=""
  dir="$BENCH_TMP/$side-$n"
  mkdir -p "$dir"
  make_key "$dir/log"
  flags="${TIDEMARK_FLAGS:-} $(eval echo "\${FLAGS_$side:-}")"
  port="$(free_port)"
  # shellcheck disable=SC2086
  "${TM[$side]}" log --data "$dir/data" --listen "127.0.0.1:$port" --key "$dir/log.key" --log-level warn $flags >"$dir/server.log" 2>&1 &
  SERVER_PID=$!
  BENCH_PIDS+=("$SERVER_PID")
  if ! wait_ready "http://127.0.0.1:$port/checkpoint" "$SERVER_PID" 30; then
    echo "run $n $side: FAILED (the server did not start)"; tail -n 5 "$dir/server.log"
    stop_pid "$SERVER_PID"; LAST_RATE=""; FAILED=1; return 0
  fi
  local url="http://127.0.0.1:$port"
  case "$LOAD" in
    ndjson | events)
      local workers=16 batch=(--batch 1000)
      [[ "$LOAD" == events ]] && workers=256 batch=()
      "$BIN/loadgen" --url "$url" --mode "$LOAD" "${batch[@]}" --workers "$workers" --size 500 \
        --duration "$DURATION" --warmup "$WARMUP" >"$dir/load.log" 2>&1 || lrc=$?
      rate="$(result_field "$(grep '^RESULT ' "$dir/load.log" | tail -n 1)" events_per_sec)"
      ;;
    k8s)
      "$BIN/k8sload" --url "$url" --batch 400 --workers 16 --duration "$DURATION" --warmup "$WARMUP" >"$dir/load.log" 2>&1 || lrc=$?
      rate="$(result_field "$(grep '^RESULT ' "$dir/load.log" | tail -n 1)" events_per_sec)"
      ;;
    add)
      "$BIN/hammer" --log_url "$url/" --log_public_key "$(cat "$dir/log.pub")" --num_writers=256 --max_write_ops=1000000 \
        --max_read_ops=0 --num_readers_random=0 --num_readers_full=0 --show_ui=false --leaf_min_size=256 --dup_chance=0 \
        --max_runtime="$(awk -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN { printf "%ds", d + w + 30 }')" --logtostderr >"$dir/load.log" 2>&1 &
      local hpid=$! s0 s1 t0 t1
      BENCH_PIDS+=("$hpid")
      sleep "$WARMUP_S"
      s0="$(curl -fsS --max-time 2 "$url/checkpoint" | sed -n 2p || true)"; t0="$(date +%s.%N)"
      sleep "$DURATION_S"
      s1="$(curl -fsS --max-time 2 "$url/checkpoint" | sed -n 2p || true)"; t1="$(date +%s.%N)"
      kill -0 "$hpid" 2>/dev/null || lrc=1
      stop_pid "$hpid"
      [[ -n "$s0" && -n "$s1" ]] && rate="$(awk -v a="$s0" -v b="$s1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) }')"
      ;;
  esac
  # The server's CPU time (user + system, in clock ticks) when the load
  # stops, over the entries it logged (the checkpoint a moment later).
  local ticks size cpu=""
  ticks="$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat" 2>/dev/null || true)"
  sleep 1.5
  size="$(curl -fsS --max-time 2 "$url/checkpoint" | sed -n 2p || true)"
  if [[ -n "$ticks" && -n "$size" && "$size" -gt 0 ]]; then
    cpu="$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$size" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
  fi
  stop_pid "$SERVER_PID"
  settle_disk "$dir/data"
  if [[ $lrc -ne 0 || -z "$rate" ]]; then
    echo "run $n $side: FAILED (load exit $lrc)"; tail -n 5 "$dir/load.log" | cut -c1-300
    LAST_RATE=""; FAILED=1; return 0
  fi
  LAST_RATE="$rate"
  LAST_CPU="$cpu"
  RATES[$side]+="$rate "
  CPUS[$side]+="$cpu "
  printf 'run %d %s %s/s, server CPU %s us/entry, loadavg %s\n' "$n" "$side" "$rate" "${cpu:-?}" "$(cut -d' ' -f1 /proc/loadavg)"
}

for n in $(seq 1 "$PAIRS"); do
  order=(A B)
  (( n % 2 == 0 )) && order=(B A)
  declare -A got=() gotcpu=()
  for s in "${order[@]}"; do
    one_run "$s" "$n"
    got[$s]="$LAST_RATE"
    gotcpu[$s]="$LAST_CPU"
  done
  if [[ -n "${got[A]}" && -n "${got[B]}" ]]; then
    PAIR_RATIOS+="$(ratio "${got[B]}" "${got[A]}") "
  fi
  if [[ -n "${gotcpu[A]}" && -n "${gotcpu[B]}" ]]; then
    CPU_RATIOS+="$(ratio "${gotcpu[B]}" "${gotcpu[A]}") "
  fi
done

echo
spread() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | sed -n '1p;$p' | paste -sd-; }
# rmedian "a b c": median of ratios, with three decimals.
rmedian() {
  { tr ' ' '\n' <<<"$1" | grep -v -e '^$' -e '^nan$' || true; } | sort -g |
    awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) printf "%.3f\n", a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}
MA="$(median_of "${RATES[A]:-}")"
MB="$(median_of "${RATES[B]:-}")"
echo "A: median $MA (runs: ${RATES[A]:-none}; spread $(spread "${RATES[A]:-}"))"
echo "B: median $MB (runs: ${RATES[B]:-none}; spread $(spread "${RATES[B]:-}"))"
echo "B/A: $(ratio "$MB" "$MA") (ratio of medians); per-pair ratios: ${PAIR_RATIOS:-none}(median $(rmedian "$PAIR_RATIOS"))"
CA="$(median_of "${CPUS[A]:-}")"
CB="$(median_of "${CPUS[B]:-}")"
echo "server CPU per entry (us): A median $CA (${CPUS[A]:-none}), B median $CB (${CPUS[B]:-none}); B/A $(ratio "$CB" "$CA"), per-pair ${CPU_RATIOS:-none}(median $(rmedian "$CPU_RATIOS"))"
echo "RESULT bench=abba load=$LOAD a=$MA b=$MB ratio=$(ratio "$MB" "$MA") pair_ratio_median=$(rmedian "$PAIR_RATIOS") cpu_a=$CA cpu_b=$CB cpu_ratio=$(ratio "$CB" "$CA") pairs=$PAIRS duration=$DURATION"
exit "$FAILED"
