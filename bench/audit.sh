#!/usr/bin/env bash
# Full verification of a 1,000,000-entry log of 500-byte events, served on
# loopback: `tidemark audit --full` against Tessera's `fsck` (v1.0.4, with
# --qps=0 and the --N that suits it best), alternately, on the same server.
#
# Knobs: ENTRIES (1000000), EVENT_SIZE (500), RUNS (3), FSCK_NS ("8 16 32 64":
# fsck's worker counts tried, the fastest is used), WORKERS (16: tidemark's
# --workers), LOG_DIR (reuse a log made by `auditlog gen` instead of making
# one), GZIP_RUNS (2: extra runs of tidemark against a gzip-serving server,
# identity and gzip, to see what compression costs on loopback; 0 skips).
#
# The log is made with Tessera's POSIX appender in process (bench/auditlog gen)
# and served by bench/auditlog serve: static files with the tlog-tiles content
# types (sendfile), and the checkpoint cosigned by a bench witness so that the
# auditor checks against a witnessed checkpoint. Both tools are timed by the
# wall clock around the whole process; the rate is ENTRIES / seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENTRIES="${ENTRIES:-1000000}"
EVENT_SIZE="${EVENT_SIZE:-500}"
RUNS="${RUNS:-3}"
FSCK_NS="${FSCK_NS:-8 16 32 64}"
WORKERS="${WORKERS:-16}"
GZIP_RUNS="${GZIP_RUNS:-2}"

bench_init
print_env "$@"
echo "entries: $ENTRIES events of ~$EVENT_SIZE bytes; runs $RUNS; fsck --N tried: $FSCK_NS; tidemark --workers $WORKERS"

cd "$REPO_DIR"
mkdir -p "$BIN"
if [[ ! -x "$BIN/fsck" ]]; then
  echo "+ GOBIN=$BIN go install github.com/transparency-dev/tessera/cmd/fsck@v1.0.4"
  GOFLAGS= GOBIN="$BIN" go install github.com/transparency-dev/tessera/cmd/fsck@v1.0.4
fi
echo "+ go build -o $BIN/tidemark ./cmd/tidemark; go build -o $BIN/auditlog ./bench/auditlog"
go build -o "$BIN/tidemark" ./cmd/tidemark
go build -o "$BIN/auditlog" ./bench/auditlog

LOG="${LOG_DIR:-$BENCH_TMP/log}"
if [[ ! -f "$LOG/checkpoint" ]]; then
  echo "== generating $ENTRIES entries into $LOG"
  "$BIN/auditlog" gen --dir "$LOG" --n "$ENTRIES" --event-size "$EVENT_SIZE" 2>&1 | grep -v '^I1' | tail -1
fi
echo "log:     $LOG ($(du -sh "$LOG" | cut -f1))"

# serve [--gzip]: starts a server on the log and sets URL and POLICY.
serve() {
  local out="$BENCH_TMP/serve.$RANDOM"
  "$BIN/auditlog" serve --dir "$LOG" "$@" >"$out" 2>&1 &
  BENCH_PIDS+=("$!")
  SERVER_PID=$!
  for _ in $(seq 1 100); do [[ -s "$out" ]] && break; sleep 0.1; done
  URL="$(head -1 "$out")"
  POLICY="$LOG/policy.served"
  echo "server:  $URL (auditlog serve $*)"
}

# now: seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# run_audit [flags]: one full check; prints the entries/s by the wall clock.
run_audit() {
  local t0 t1 out
  t0=$(now)
  out="$("$BIN/tidemark" audit --policy "$POLICY" --full --progress off --workers "$WORKERS" "$@")" || {
    echo "tidemark audit failed:" >&2; echo "$out" >&2; return 1; }
  t1=$(now)
  grep -q 'verified=true' <<<"$out" || { echo "tidemark audit did not verify:" >&2; echo "$out" >&2; return 1; }
  awk -v n="$ENTRIES" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f\n", n/(b-a)}'
}

# run_fsck N: one fsck; prints the entries/s by the wall clock.
run_fsck() {
  local t0 t1 out
  t0=$(now)
  out="$("$BIN/fsck" --storage_url "$URL/" --public_key "$LOG/log.pub" --N "$1" --qps=0 --ui=false 2>&1)" || true
  t1=$(now)
  # fsck v1.0.4 exits 0 even when the check fails: read what it says.
  if ! grep -q "Successfully fsck'd log with size $ENTRIES" <<<"$out" || grep -q 'fsck failed' <<<"$out"; then
    echo "fsck failed:" >&2; tail -5 <<<"$out" >&2; return 1
  fi
  awk -v n="$ENTRIES" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f\n", n/(b-a)}'
}

serve
echo "== warm-up (page cache; not counted)"
run_audit >/dev/null
echo "== fsck: choosing --N"
BEST_N="" BEST=0
for n in $FSCK_NS; do
  r="$(run_fsck "$n")"
  echo "fsck --N $n: $r entries/s"
  if (( r > BEST )); then BEST=$r BEST_N=$n; fi
done
echo "fsck best --N: $BEST_N"

echo "== $RUNS alternating runs"
A=() F=()
for i in $(seq 1 "$RUNS"); do
  a="$(run_audit)"; f="$(run_fsck "$BEST_N")"
  A+=("$a") F+=("$f")
  echo "run $i: tidemark audit --full $a entries/s; fsck --N $BEST_N $f entries/s; load $(cut -d' ' -f1 /proc/loadavg)"
done
MA="$(printf '%s\n' "${A[@]}" | median)"
MF="$(printf '%s\n' "${F[@]}" | median)"
echo "== medians"
echo "tidemark audit --full: $MA entries/s (runs: ${A[*]})"
echo "fsck --N $BEST_N --qps=0: $MF entries/s (runs: ${F[*]})"
echo "ratio: $(ratio "$MA" "$MF") (target >= 1.5; and tidemark >= 300000 entries/s)"

if (( GZIP_RUNS > 0 )); then
  stop_pid "$SERVER_PID"
  serve --gzip
  echo "== compression on loopback (server gzips entry bundles on request, BestSpeed, as tidemark log does)"
  for i in $(seq 1 "$GZIP_RUNS"); do
    echo "run $i: identity $(run_audit --compression identity) entries/s; gzip $(run_audit --compression gzip) entries/s"
  done
fi
echo "RESULT audit_full_eps=$MA fsck_eps=$MF fsck_n=$BEST_N ratio=$(ratio "$MA" "$MF") entries=$ENTRIES workers=$WORKERS"
