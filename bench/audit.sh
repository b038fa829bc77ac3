#!/usr/bin/env bash
# Full verification of a 1,000,000-entry log of 500-byte events, served on
# loopback: `tidemark audit --full` against Tessera's `fsck` (v1.0.4, with
# --qps=0 and the --N that suits it best), alternately (ABBA: the auditor first
# on odd runs, fsck first on even runs), on the same server.
#
# Knobs: ENTRIES (1000000), EVENT_SIZE (500), RUNS (3), FSCK_NS ("8 16 32 64":
# fsck's worker counts tried, the fastest is used), WORKERS (16: tidemark's
# --workers), LOG_DIR (reuse a log made by `auditlog gen` instead of making
# one; SERVER=static only), GZIP_RUNS (2: extra runs of tidemark, identity and
# gzip, to see what compression costs on loopback; 0 skips), SERVER (static),
# COMPRESSION (the auditor's --compression: gzip with SERVER=tidemark, its
# default, auto, otherwise), TIDEMARK_FLAGS (more `tidemark log` flags, SERVER=tidemark),
# RESULTS (append each run's figures to this file as JSON lines, bench/README.md).
#
# SERVER=static: the log is made with Tessera's POSIX appender in process (bench/auditlog
# gen) and served by bench/auditlog serve: static files with the tlog-tiles content
# types (sendfile), and the checkpoint cosigned by a bench witness so that the
# auditor checks against a witnessed checkpoint.
# SERVER=tidemark: `tidemark log --search=false` itself, filled with ENTRIES keyed
# events (bench/loadgen --mode ndjson --batch 1000 --count ENTRIES), serves the tiles
# as it does in production: entry bundles gzipped for clients that ask (both tools do:
# fsck through Go's HTTP client, the auditor with --compression gzip), from its cache
# of gzipped bundles after the warm-up run. The policy is the log's key and URL with
# "quorum none" (no witnesses). The search index is off so that it does not index
# beside the runs.
# Both tools are timed by the wall clock around the whole process; the rate is
# ENTRIES / seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENTRIES="${ENTRIES:-1000000}"
EVENT_SIZE="${EVENT_SIZE:-500}"
RUNS="${RUNS:-3}"
FSCK_NS="${FSCK_NS:-8 16 32 64}"
WORKERS="${WORKERS:-16}"
GZIP_RUNS="${GZIP_RUNS:-2}"
SERVER="${SERVER:-static}"
case "$SERVER" in
  static) COMPRESSION="${COMPRESSION:-auto}" COMPARISON=audit-static ;;
  tidemark) COMPRESSION="${COMPRESSION:-gzip}" COMPARISON=audit ;;
  *) echo "SERVER must be static or tidemark" >&2; exit 2 ;;
esac

bench_init
print_env "$@"
echo "entries: $ENTRIES events of ~$EVENT_SIZE bytes; runs $RUNS; fsck --N tried: $FSCK_NS; tidemark --workers $WORKERS --compression $COMPRESSION; server: $SERVER"

cd "$REPO_DIR"
mkdir -p "$BIN"
if [[ ! -x "$BIN/fsck" ]]; then
  echo "+ GOBIN=$BIN go install github.com/transparency-dev/tessera/cmd/fsck@v1.0.4"
  GOFLAGS= GOBIN="$BIN" go install github.com/transparency-dev/tessera/cmd/fsck@v1.0.4
fi
echo "+ go build -o $BIN/tidemark ./cmd/tidemark; go build -o $BIN/auditlog ./bench/auditlog"
go build -o "$BIN/tidemark" ./cmd/tidemark
go build -o "$BIN/auditlog" ./bench/auditlog
if [[ "$SERVER" == tidemark ]]; then
  echo "+ go build -o $BIN/loadgen ./bench/loadgen; go build -o $BIN/keygen ./bench/keygen"
  go build -o "$BIN/loadgen" ./bench/loadgen
  go build -o "$BIN/keygen" ./bench/keygen
  snapshot_tidemark
fi

if [[ "$SERVER" == static ]]; then
  LOG="${LOG_DIR:-$BENCH_TMP/log}"
  if [[ ! -f "$LOG/checkpoint" ]]; then
    echo "== generating $ENTRIES entries into $LOG"
    "$BIN/auditlog" gen --dir "$LOG" --n "$ENTRIES" --event-size "$EVENT_SIZE" 2>&1 | grep -v '^I1' | tail -1
  fi
  echo "log:     $LOG ($(du -sh "$LOG" | cut -f1))"
fi

# serve_tidemark: starts `tidemark log` on a fresh directory, fills it with ENTRIES events,
# sets URL, POLICY and LOG (for LOG/log.pub) and ENTRIES (the tree size).
serve_tidemark() {
  LOG="$BENCH_TMP/tidemark-log"
  mkdir -p "$LOG"
  make_key "$LOG/log"
  TIDEMARK_FLAGS="--search=false ${TIDEMARK_FLAGS:-}" start_server tidemark "$LOG/data" "$LOG/log.key" "$LOG/server.log"
  URL="http://127.0.0.1:$SERVER_PORT"
  echo "server:  $URL (tidemark log --search=false ${TIDEMARK_FLAGS:-})"
  echo "== filling it: loadgen --mode ndjson --batch 1000 --workers 16 --size $EVENT_SIZE --count $ENTRIES --warmup 0"
  "$BIN/loadgen" --url "$URL" --mode ndjson --batch 1000 --workers 16 --size "$EVENT_SIZE" --count "$ENTRIES" --warmup 0 --quiet \
    >"$LOG/loadgen.log" 2>&1 || { echo "loadgen failed:" >&2; tail -n 12 "$LOG/loadgen.log" >&2; exit 1; }
  grep '^RESULT ' "$LOG/loadgen.log" | sed 's/^/fill: /'
  local size=0
  for _ in $(seq 1 600); do
    size="$(curl -fsS --max-time 2 "$URL/checkpoint" | sed -n 2p || echo 0)"
    (( size >= ENTRIES )) && break
    sleep 0.1
  done
  (( size >= ENTRIES )) || { echo "the checkpoint did not reach $ENTRIES (size $size)" >&2; exit 1; }
  ENTRIES="$size"
  echo "log:     tree size $ENTRIES, $(du -sh "$LOG/data" | cut -f1) on disk"
  POLICY="$LOG/policy"
  printf 'log %s %s\nquorum none\n' "$(cat "$LOG/log.pub")" "$URL" >"$POLICY"
}

# gzip_served: entry bundles the tidemark log has served gzipped so far (all results).
gzip_served() {
  { curl -fsS --max-time 5 "$URL/metrics" 2>/dev/null || true; } | awk '/^tidemark_log_entry_bundle_gzip_total/ { s += $2 } END { printf "%d\n", s }'
}

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
  out="$("$BIN/tidemark" audit --policy "$POLICY" --full --progress off --workers "$WORKERS" --compression "$COMPRESSION" "$@")" || {
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

if [[ "$SERVER" == tidemark ]]; then serve_tidemark; else serve; fi
echo "== warm-up (page cache$([[ "$SERVER" == tidemark ]] && echo ", the log's cache of gzipped bundles"); not counted)"
run_audit >/dev/null
echo "== fsck: choosing --N"
BEST_N="" BEST=0
for n in $FSCK_NS; do
  r="$(run_fsck "$n")"
  echo "fsck --N $n: $r entries/s"
  if (( r > BEST )); then BEST=$r BEST_N=$n; fi
done
echo "fsck best --N: $BEST_N"

echo "== $RUNS alternating runs (ABBA)"
A=() F=()
MORE="\"entries\":$ENTRIES,\"fsck_n\":$BEST_N,\"compression\":$(json_str "$COMPRESSION")"
for i in $(seq 1 "$RUNS"); do
  g0="$([[ "$SERVER" == tidemark ]] && gzip_served || echo 0)"
  if (( i % 2 == 1 )); then
    a="$(run_audit)"; g1="$([[ "$SERVER" == tidemark ]] && gzip_served || echo 0)"; f="$(run_fsck "$BEST_N")"; g2="$([[ "$SERVER" == tidemark ]] && gzip_served || echo 0)"
    ga=$(( g1 - g0 )) gf=$(( g2 - g1 ))
  else
    f="$(run_fsck "$BEST_N")"; g1="$([[ "$SERVER" == tidemark ]] && gzip_served || echo 0)"; a="$(run_audit)"; g2="$([[ "$SERVER" == tidemark ]] && gzip_served || echo 0)"
    gf=$(( g1 - g0 )) ga=$(( g2 - g1 ))
  fi
  A+=("$a") F+=("$f")
  record "$COMPARISON" tidemark-audit entries_per_sec entries/s "$a" "$i" "$MORE"
  record "$COMPARISON" fsck entries_per_sec entries/s "$f" "$i" "$MORE"
  gz=""; [[ "$SERVER" == tidemark ]] && gz=" (entry bundles served gzipped: auditor $ga, fsck $gf)"
  echo "run $i: tidemark audit --full $a entries/s; fsck --N $BEST_N $f entries/s; load $(cut -d' ' -f1 /proc/loadavg)$gz"
done
MA="$(printf '%s\n' "${A[@]}" | median)"
MF="$(printf '%s\n' "${F[@]}" | median)"
echo "== medians"
echo "tidemark audit --full: $MA entries/s (runs: ${A[*]})"
echo "fsck --N $BEST_N --qps=0: $MF entries/s (runs: ${F[*]})"
echo "ratio: $(ratio "$MA" "$MF") (target >= 1.5; and tidemark >= 300000 entries/s)"

if (( GZIP_RUNS > 0 )); then
  if [[ "$SERVER" == static ]]; then
    stop_pid "$SERVER_PID"
    serve --gzip
  fi
  if [[ "$SERVER" == tidemark ]]; then
    echo "== compression on loopback (tidemark log: full bundles gzipped from its cache, partial ones per request)"
  else
    echo "== compression on loopback (auditlog serve --gzip: every entry bundle gzipped on request, BestSpeed)"
  fi
  for i in $(seq 1 "$GZIP_RUNS"); do
    echo "run $i: identity $(run_audit --compression identity) entries/s; gzip $(run_audit --compression gzip) entries/s"
  done
fi
echo "RESULT audit_full_eps=$MA fsck_eps=$MF fsck_n=$BEST_N ratio=$(ratio "$MA" "$MF") entries=$ENTRIES workers=$WORKERS"
