#!/usr/bin/env bash
# What witnessing costs writes on `tidemark log --mysql`. Tessera v1.0.4's MySQL driver
# publishes a checkpoint inside a transaction that holds the TreeState row lock
# (SELECT ... FOR UPDATE) while the checkpoint publisher asks the witnesses for
# cosignatures; sequencing takes the same row lock, so writes stall for the witness
# round trip once per checkpoint interval, and for up to --witness-timeout when the
# quorum does not answer.
#
# One MySQL frontend, under Tessera's hammer (WRITERS writers, dup_chance 0), in CASES:
#   none      no --policy: no witnesses
#   quorum    --policy with 3 local `tidemark witness` processes, group 2 of 3, all answering
#   stopped   the same policy, all 3 witnesses SIGSTOPped after the log's first (cosigned)
#             checkpoint: they accept connections (the kernel does) and never answer, so
#             every round waits the whole --witness-timeout (default 5s)
#   killed    the same policy, all 3 witnesses killed: connections are refused at once
# Each run on a fresh database, key and witnesses; the cases alternate ABBA.
#
# The rate: the checkpoint is not published while the quorum is down (fail-closed), so
# the hammer's tree size goal cannot be used. The hammer runs for WARMUP + DURATION
# (--max_runtime) and the script reads the integrated tree size from the database
# (TreeState) every 0.25 s; entries/s is the growth over DURATION after WARMUP. The run
# line also shows the longest time the tree did not grow (stall_max) and the share of
# the measured time spent in gaps of 0.5 s or more without growth (stalled).
#
# Environment (defaults in brackets):
#   RUNS [2]            runs per case
#   CASES ["none quorum stopped killed"]
#   DURATION [20]       measured seconds        WARMUP [3]  seconds not measured
#   WRITERS [256]  LEAF_SIZE [256]   hammer --num_writers, --leaf_min_size
#   HAMMER_FLAGS, TIDEMARK_FLAGS (e.g. --witness-timeout 2s), WITNESS_FLAGS   more flags
#   MYSQL_ADDR [127.0.0.1:3306]  MYSQL_USER [root]  MYSQL_PASSWORD []
#   KEEP_TMP [0]
#   RESULTS             append each run's figures to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-2}"
CASES="${CASES:-none quorum stopped killed}"
DURATION="${DURATION:-20}"
WARMUP="${WARMUP:-3}"
WRITERS="${WRITERS:-256}"
LEAF_SIZE="${LEAF_SIZE:-256}"

need_bin hammer keygen tidemark
mysql_cli -e 'SELECT 1' >/dev/null || { echo "cannot reach MySQL at $MYSQL_ADDR as $MYSQL_USER" >&2; exit 1; }

bench_init
print_env "$@"
snapshot_tidemark
RUNTIME=$(( WARMUP + DURATION + 2 ))
HAMMER_ARGS=(--num_writers="$WRITERS" --max_write_ops=1000000 --max_read_ops=0 --num_readers_random=0
  --num_readers_full=0 --show_ui=false --leaf_write_goal=0 --max_runtime="${RUNTIME}s"
  --leaf_min_size="$LEAF_SIZE" --dup_chance=0 --logtostderr)
# shellcheck disable=SC2206
HAMMER_ARGS+=(${HAMMER_FLAGS:-})
echo "mysql:    $MYSQL_ADDR, $(mysql_cli -N -e 'SELECT VERSION()')"
echo "runs:     $RUNS per case, alternating ABBA; cases: $CASES"
echo "tidemark: $BIN/tidemark log --mysql '$(mysql_dsn DB)' --data DIR --listen 127.0.0.1:PORT --key KEYFILE [--policy POLICY] ${TIDEMARK_FLAGS:-}"
echo "witness:  $BIN/tidemark witness --data WDIR --logs LOGS --listen 127.0.0.1:PORT --name bench.tidemark.localhost/wI --log-level warn ${WITNESS_FLAGS:-} (x3; policy: group g 2 w1 w2 w3, quorum g)"
echo "hammer:   $BIN/hammer --log_url http://127.0.0.1:PORT/ --log_public_key VKEY ${HAMMER_ARGS[*]}"
echo "measure:  tree size (TreeState) every 0.25 s; growth over ${DURATION}s after ${WARMUP}s"
echo "tmp:      $BENCH_TMP"
echo

declare -A RATES=() STALLS=()
FAILED=0

# start_witnesses DIR VKEY: three witnesses for the log VKEY; writes DIR/policy; sets WPIDS.
start_witnesses() {
  local dir="$1" vkey="$2" i port wpid
  WPIDS=()
  printf 'logs/v0\nvkey %s\nqpd 100000000\n' "$vkey" >"$dir/witness-logs"
  printf 'log %s\n' "$vkey" >"$dir/policy"
  for i in 1 2 3; do
    port="$(free_port)"
    # shellcheck disable=SC2086
    "${TIDEMARK_BIN:-$BIN/tidemark}" witness --data "$dir/w$i" --logs "$dir/witness-logs" --listen "127.0.0.1:$port" \
      --name "bench.tidemark.localhost/w$i" --log-level warn ${WITNESS_FLAGS:-} >"$dir/witness$i.log" 2>&1 &
    wpid=$!
    BENCH_PIDS+=("$wpid") WPIDS+=("$wpid")
    wait_ready "http://127.0.0.1:$port/healthz" "$wpid" 30 || { tail -n 10 "$dir/witness$i.log" >&2; return 1; }
    printf 'witness w%d %s http://127.0.0.1:%s\n' "$i" "$(tr -d '\n' <"$dir/w$i/witness.pub")" "$port" >>"$dir/policy"
  done
  printf 'group g 2 w1 w2 w3\nquorum g\n' >>"$dir/policy"
}

# start_size_watch DB OUT: "unix-seconds size" every 0.25 s from TreeState; sets WATCH_PID.
start_size_watch() {
  local db="$1" out="$2"
  ( while :; do s="$(mysql_tree_size "$db")"; [[ -n "$s" ]] && echo "$(date +%s.%N) $s" >>"$out"; sleep 0.25; done ) &
  WATCH_PID=$!
  BENCH_PIDS+=("$WATCH_PID")
}

one_run() {
  local c="$1" n="$2" dir db dsn tm_flags="" p
  dir="$BENCH_TMP/$c-$n"
  db="tidemark_bench_$$_witness_${c}_$n"
  mkdir -p "$dir"
  make_key "$dir/log"
  mysql_create_db "$db"
  dsn="$(mysql_dsn "$db")"
  WPIDS=()
  if [[ "$c" != none ]]; then
    if ! start_witnesses "$dir" "$(cat "$dir/log.pub")"; then
      echo "run $n $c: FAILED (a witness did not start)"; FAILED=1; record mysql-witness "$c" entries_per_sec entries/s nan "$n"; mysql_drop_db "$db"; return 0
    fi
    tm_flags="--policy $dir/policy"
  fi
  local saved="${TIDEMARK_FLAGS:-}"
  TIDEMARK_FLAGS="$tm_flags $saved"
  if ! start_mysql_server tidemark "$dsn" "$dir/data" "$dir/log.key" "$dir/server.log"; then
    TIDEMARK_FLAGS="$saved"
    echo "run $n $c: FAILED (the log did not start)"; FAILED=1; record mysql-witness "$c" entries_per_sec entries/s nan "$n"
    for p in "${WPIDS[@]:-}"; do [[ -n "$p" ]] && stop_pid "$p"; done
    mysql_drop_db "$db"; return 0
  fi
  TIDEMARK_FLAGS="$saved"
  local port="$SERVER_PORT" spid="$SERVER_PID"
  case "$c" in
    stopped) for p in "${WPIDS[@]}"; do kill -STOP "$p"; done ;;
    killed) for p in "${WPIDS[@]}"; do stop_pid "$p"; done; WPIDS=() ;;
  esac
  start_size_watch "$db" "$dir/sizes.txt"
  local watch_pid="$WATCH_PID" t0 hrc=0
  t0="$(date +%s.%N)"
  "$BIN/hammer" --log_url "http://127.0.0.1:$port/" --log_public_key "$(cat "$dir/log.pub")" "${HAMMER_ARGS[@]}" >"$dir/hammer.log" 2>&1 &
  local hpid=$!
  BENCH_PIDS+=("$hpid")
  sleep $(( WARMUP + DURATION + 1 ))
  stop_pid "$hpid"
  stop_pid "$watch_pid"
  local cps
  cps="$(curl -fsS --max-time 2 "http://127.0.0.1:$port/checkpoint" 2>/dev/null | sed -n 2p || echo none)"
  # The log first, so that its last rounds do not meet witnesses that are going away.
  stop_pid "$spid"
  for p in "${WPIDS[@]:-}"; do [[ -n "$p" ]] && { kill -CONT "$p" 2>/dev/null || true; stop_pid "$p"; }; done
  # rate over [t0 + WARMUP, t0 + WARMUP + DURATION]; stalls: gaps without growth.
  local stats
  stats="$(awk -v a="$t0" -v w="$WARMUP" -v d="$DURATION" '
    { t = $1 - a; s = $2 }
    t >= w && !have1 { t1 = t; s1 = s; have1 = 1; lt = t; ls = s }
    have1 && t <= w + d {
      t2 = t; s2 = s
      if (s != ls) { gap = t - lt; if (gap > maxgap) maxgap = gap; if (gap >= 0.5) stalled += gap; lt = t; ls = s }
    }
    END {
      if (!have1 || t2 <= t1) { print "nan nan nan"; exit }
      gap = t2 - lt; if (gap > maxgap) maxgap = gap; if (gap >= 0.5) stalled += gap
      printf "%.0f %.2f %.2f\n", (s2 - s1) / (t2 - t1), maxgap, stalled / (t2 - t1)
    }' "$dir/sizes.txt")"
  local rate maxgap stalled
  read -r rate maxgap stalled <<<"$stats"
  local qf
  qf="$(grep -c -i 'quorum' "$dir/server.log" || true)"
  RATES[$c]+="$rate "
  STALLS[$c]+="$stalled "
  record mysql-witness "$c" entries_per_sec entries/s "$rate" "$n"
  record mysql-witness "$c" stalled_share fraction "$stalled" "$n"
  printf 'run %d %-8s entries_per_sec=%s stall_max_s=%s stalled=%s tree=%s published_checkpoint=%s quorum_log_lines=%s loadavg=%s\n' \
    "$n" "$c" "$rate" "$maxgap" "$stalled" "$(tail -n 1 "$dir/sizes.txt" | cut -d' ' -f2)" "$cps" "$qf" "$(cut -d' ' -f1 /proc/loadavg)"
  mysql_drop_db "$db"
  settle_disk "$dir"
}

read -r -a CLIST <<<"$CASES"
for n in $(seq 1 "$RUNS"); do
  order=("${CLIST[@]}")
  if (( n % 2 == 0 )); then
    order=()
    for (( i = ${#CLIST[@]} - 1; i >= 0; i-- )); do order+=("${CLIST[$i]}"); done
  fi
  for c in "${order[@]}"; do one_run "$c" "$n"; done
done

echo
echo "== summary (entries/s on one MySQL frontend; noisy 2-core machine shared with other work)"
base="$(median_of "${RATES[none]:-}")"
printf '%-8s %12s %14s %16s %s\n' case "median/s" "lost vs none" "stalled (median)" runs
res="RESULT bench=mysql-witness runs=$RUNS duration=$DURATION"
for c in "${CLIST[@]}"; do
  m="$(median_of "${RATES[$c]:-}")"
  lost="$(awk -v m="$m" -v b="$base" 'BEGIN { if (b + 0 > 0 && m ~ /^[0-9.]+$/) printf "%.1f%%", 100 * (1 - m / b); else print "-" }')"
  printf '%-8s %12s %14s %16s %s\n' "$c" "$m" "$lost" "$(median_of "${STALLS[$c]:-}")" "${RATES[$c]:-none}"
  res+=" $c=$m"
done
echo "$res"
exit "$FAILED"
