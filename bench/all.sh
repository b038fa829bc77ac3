#!/usr/bin/env bash
# Every comparison with its baseline, one after the other, then the report:
# bench/tools.sh, each script below (each alternates its contenders ABBA and
# repeats its runs, as it does alone) with RESULTS pointing at one results file,
# the environment (cores, memory, kernel, go, Tessera, MySQL, commit, load
# average before and after each script), then bench/report, which writes the
# table, the environment and the plots.
#
# Results go to bench/results/<UTC timestamp>/ (gitignored): env.json,
# comparisons.jsonl (one line per script: command, time taken, load averages,
# exit status), results.jsonl (one line per run and figure, from the scripts),
# logs/<name>.log (each script's whole output). A full run (no QUICK, no ONLY)
# then publishes: docs/performance/latest.json (the results as one file, committed),
# the plots in docs/performance/, and the generated parts of docs/performance.md and
# README.md. Other runs write the page, plots and latest.json into the results
# directory instead (PUBLISH=1 publishes them anyway; PUBLISH=0 never).
#
# Environment (defaults in brackets):
#   QUICK [0]     1: a smoke run, a few seconds per run and one run per contender, to check
#                 that every script works (the page says so); about 5 minutes here
#   ONLY []       comma-separated names of comparisons to run (the names below), e.g.
#                 ONLY=ndjson,k8s
#   RUNS []       runs per contender for every script, instead of the defaults below
#   PUBLISH       1 to write into docs/ and README.md, 0 not to (see above)
#   OUT           the results directory [bench/results/<UTC timestamp>]
#   MYSQL_ADDR, MYSQL_USER, MYSQL_PASSWORD   for mysql and mysql-witness (skipped, and
#                 shown as not measured, when no MySQL-compatible server answers)
#
# To add a comparison: a line in COMPARISONS below; `record` calls in its script
# (bench/lib.sh); a row (Spec) in bench/report/rows.go for its target.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# name | script | the script's environment for a full run | for QUICK=1 | needs
# The full run's knobs give at least 3 alternated runs per contender.
COMPARISONS=(
  "add-vs-conformance|add-vs-conformance.sh|RUNS=5 DURATION=15s WARMUP=3s|RUNS=1 DURATION=3s WARMUP=1s FSCK=0|"
  "events-vs-add|events-vs-add.sh|RUNS=5|RUNS=1 DURATION=3s WARMUP=1s|"
  "ndjson|ndjson.sh|RUNS=3|RUNS=1 DURATION=3s WARMUP=1s|"
  "k8s|k8s.sh|RUNS=3|RUNS=1 DURATION=3s WARMUP=1s|"
  "receipt|receipt.sh|RUNS=3 RATES=50,1000 LATENCIES=0 LOG_FLAGS= DURATION=20s|RUNS=1 RATES=50,1000 LATENCIES=0 LOG_FLAGS= DURATION=3s WARMUP=1s|"
  "audit|audit.sh|RUNS=3 SERVER=tidemark GZIP_RUNS=0 ENTRIES=1000000 WORKERS=64|RUNS=1 SERVER=tidemark GZIP_RUNS=0 ENTRIES=20000 FSCK_NS=16|"
  "witness|witness.sh|RUNS=3 LOGS=40000 REQUESTS=100000|RUNS=1 LOGS=40000 REQUESTS=5000|"
  "commitment|commitment.sh|RUNS=3|RUNS=1 DURATION=3s WARMUP=1s|"
  "search|search.sh|RUNS=3 PHASES=ingest|RUNS=1 PHASES=ingest DURATION=3s WARMUP=1s CATCHUP_TIMEOUT=60|"
  "mysql|mysql.sh|RUNS=3|RUNS=1 LEAVES=5000 DURATION=3s WARMUP=1s FSCK=0|mysql"
  "mysql-witness|mysql-witness.sh|RUNS=3|RUNS=1 DURATION=3 WARMUP=2|mysql"
)

QUICK="${QUICK:-0}"
ONLY="${ONLY:-}"
ALL_RUNS="${RUNS:-}"
unset RUNS
if [[ -z "${PUBLISH:-}" ]]; then
  if [[ "$QUICK" == 1 || -n "$ONLY" ]]; then PUBLISH=0; else PUBLISH=1; fi
fi
OUT="${OUT:-$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)}"
[[ "$OUT" == /* ]] || OUT="$PWD/$OUT"

names=()
for c in "${COMPARISONS[@]}"; do names+=("${c%%|*}"); done
if [[ -n "$ONLY" ]]; then
  IFS=, read -r -a only <<<"$ONLY"
  for o in "${only[@]}"; do
    if [[ " ${names[*]} " != *" $o "* ]]; then
      echo "ONLY: no comparison named $o (the names: ${names[*]})" >&2
      exit 2
    fi
  done
fi
selected=()
for c in "${COMPARISONS[@]}"; do
  name="${c%%|*}"
  [[ -z "$ONLY" || ",$ONLY," == *",$name,"* ]] && selected+=("$c")
done

mkdir -p "$OUT/logs"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
: >"$OUT/comparisons.jsonl"
T0="$(date +%s)"

elapsed() { local s=$(( $(date +%s) - T0 )); printf '%d:%02d:%02d' $(( s / 3600 )) $(( s / 60 % 60 )) $(( s % 60 )); }
loadavg3() { cut -d' ' -f1-3 /proc/loadavg; }
say() { printf '[%s] %s\n' "$(elapsed)" "$*"; }

MYSQL_OK=0
MYSQL_VERSION=""
if command -v mysql >/dev/null && mysql_cli -e 'SELECT 1' >/dev/null 2>&1; then
  MYSQL_OK=1
  MYSQL_VERSION="$(mysql_cli -N -e 'SELECT VERSION()' 2>/dev/null || true)"
fi
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
LOAD_START="$(loadavg3)"

# write_env [END LOAD_END]: env.json.
write_env() {
  local tessera
  tessera="$(cd "$REPO_DIR" && go list -m -f '{{.Version}}' github.com/transparency-dev/tessera 2>/dev/null || echo unknown)"
  {
    printf '{\n "source": "measured",\n'
    printf ' "start": %s,\n' "$(json_str "$START")"
    [[ -n "${1:-}" ]] && printf ' "end": %s,\n' "$(json_str "$1")"
    printf ' "nproc": %s,\n' "$(nproc)"
    printf ' "memory": %s,\n' "$(json_str "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')")"
    printf ' "kernel": %s,\n' "$(json_str "$(uname -r)")"
    printf ' "go": %s,\n' "$(json_str "$(go version | awk '{print $3}')")"
    printf ' "tessera": %s,\n' "$(json_str "$tessera")"
    [[ -n "$MYSQL_VERSION" ]] && printf ' "mysql": %s,\n' "$(json_str "MariaDB/MySQL $MYSQL_VERSION")"
    printf ' "commit": %s,\n' "$(json_str "$(git -C "$REPO_DIR" rev-parse HEAD 2>/dev/null || echo none)")"
    printf ' "describe": %s,\n' "$(json_str "$(git -C "$REPO_DIR" describe --always --dirty --tags 2>/dev/null || echo none)")"
    [[ "$QUICK" == 1 ]] && printf ' "quick": true,\n'
    [[ -n "$ONLY" ]] && printf ' "only": %s,\n' "$(json_str "$ONLY")"
    [[ -n "${2:-}" ]] && printf ' "loadavg_end": %s,\n' "$(json_str "$2")"
    printf ' "loadavg_start": %s\n}\n' "$(json_str "$LOAD_START")"
  } >"$OUT/env.json"
}

# progress NAME K N RUNS: the run lines, RESULT lines, phases and failures of a
# script's output, with the time since the start and "run i of RUNS".
progress() {
  local name="$1" k="$2" n="$3" runs="$4" line
  while IFS= read -r line; do
    case "$line" in
      "== environment"*) continue ;;
      run\ [0-9]*|RESULT*|"== "*|*FAILED*|*"not ready"*|*"cannot reach"*) ;;
      *) continue ;;
    esac
    [[ -n "$runs" && "$line" =~ ^run\ ([0-9]+)(.*)$ ]] && line="run ${BASH_REMATCH[1]} of $runs${BASH_REMATCH[2]}"
    printf '[%s] %s (%d/%d): %s\n' "$(elapsed)" "$name" "$k" "$n" "${line:0:220}"
  done
}

write_env
say "bench/all.sh: ${#selected[@]} comparisons$([[ "$QUICK" == 1 ]] && echo ', QUICK=1 (smoke run)'); results in $OUT"
say "nproc $(nproc), load average $LOAD_START, $(go version | awk '{print $3}'), commit $(git -C "$REPO_DIR" describe --always --dirty --tags 2>/dev/null)"

say "tools: bench/tools.sh (log: $OUT/logs/tools.log)"
if ! "$BENCH_DIR/tools.sh" >"$OUT/logs/tools.log" 2>&1; then
  say "bench/tools.sh FAILED:"; tail -n 20 "$OUT/logs/tools.log"; exit 1
fi
say "tools: building bench/report"
if ! (cd "$REPO_DIR" && go build -o "$BIN/report" ./bench/report) >>"$OUT/logs/tools.log" 2>&1; then
  say "building bench/report FAILED:"; tail -n 20 "$OUT/logs/tools.log"; exit 1
fi

FAILED=0
k=0
for c in "${selected[@]}"; do
  k=$(( k + 1 ))
  IFS='|' read -r name script full quick needs <<<"$c"
  knobs="$full"
  [[ "$QUICK" == 1 ]] && knobs="$quick"
  if [[ -n "$ALL_RUNS" ]]; then
    knobs="$(sed -E "s/(^| )RUNS=[0-9]+//" <<<"$knobs") RUNS=$ALL_RUNS"
    knobs="${knobs# }"
  fi
  runs="$(sed -nE 's/(^|.* )RUNS=([0-9]+).*/\2/p' <<<"$knobs")"
  command="$knobs bench/$script"
  before="$(loadavg3)"
  t1="$(date +%s)"
  started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  if [[ "$needs" == mysql && "$MYSQL_OK" != 1 ]]; then
    say "$name ($k/${#selected[@]}): SKIPPED: no MySQL-compatible server answers at $MYSQL_ADDR as $MYSQL_USER"
    printf '{"name":%s,"command":%s,"start":%s,"seconds":0,"loadavg_before":%s,"loadavg_after":%s,"exit":-1,"note":"skipped: no MySQL at %s"}\n' \
      "$(json_str "$name")" "$(json_str "$command")" "$(json_str "$started")" "$(json_str "$before")" "$(json_str "$before")" "$MYSQL_ADDR" >>"$OUT/comparisons.jsonl"
    continue
  fi
  say "$name ($k/${#selected[@]}): $command (load average $before; log: $OUT/logs/$name.log)"
  # shellcheck disable=SC2086
  (cd "$REPO_DIR" && env RESULTS="$RESULTS" $knobs bash "$BENCH_DIR/$script") 2>&1 | tee "$OUT/logs/$name.log" | progress "$name" "$k" "${#selected[@]}" "$runs"
  rc="${PIPESTATUS[0]}"
  secs=$(( $(date +%s) - t1 ))
  after="$(loadavg3)"
  printf '{"name":%s,"command":%s,"start":%s,"seconds":%d,"loadavg_before":%s,"loadavg_after":%s,"exit":%d}\n' \
    "$(json_str "$name")" "$(json_str "$command")" "$(json_str "$started")" "$secs" "$(json_str "$before")" "$(json_str "$after")" "$rc" >>"$OUT/comparisons.jsonl"
  if [[ "$rc" != 0 ]]; then
    FAILED=1
    say "$name: FAILED (exit $rc) after ${secs}s; the end of its log:"
    tail -n 12 "$OUT/logs/$name.log" | sed 's/^/    /'
  else
    say "$name: done in ${secs}s (load average $after)"
  fi
done

write_env "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(loadavg3)"
say "report: $(wc -l <"$RESULTS") figures"
if [[ "$PUBLISH" == 1 ]]; then
  (cd "$REPO_DIR" && "$BIN/report" --in "$OUT" --page docs/performance.md --images docs/performance \
    --readme README.md --latest docs/performance/latest.json) || FAILED=1
  say "wrote docs/performance.md, docs/performance/*.png, docs/performance/latest.json and README.md's table"
else
  cp "$REPO_DIR/docs/performance.md" "$OUT/performance.md"
  "$BIN/report" --in "$OUT" --page "$OUT/performance.md" --images "$OUT/performance" --latest "$OUT/performance/latest.json" || FAILED=1
  say "wrote $OUT/performance.md and its plots in $OUT/performance/ (docs/ untouched: PUBLISH=1 writes there)"
fi
say "done$([[ $FAILED == 1 ]] && echo ': some comparisons FAILED (see above)')"
exit "$FAILED"
