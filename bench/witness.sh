#!/usr/bin/env bash
# add-checkpoint throughput of `tidemark witness` with durable state (SQLite,
# WAL, synchronous=FULL, group commit): bench/witnessload makes LOGS log keys,
# starts the witness on a fresh data directory, preloads every log into the
# state, then CLIENTS concurrent clients post REQUESTS checkpoints that each
# advance one log by one entry with a valid consistency proof. Prints each
# run, the witness's CPU per request, and the median (issue 13's target:
# >= 10,000 requests/s on 2 cores; the witness network's top profile is
# 100/s across 40,000 logs).
#
# With BASE (a git revision), it also builds `tidemark` at that revision and
# runs the two alternately, base, new, new, base, ... (ABBA), RUNS times
# each, with the same signed requests: a before/after in one command, which
# is what to trust on a shared machine. BASE_BIN instead takes a binary
# already built.
#
# Environment (defaults in brackets):
#   RUNS [3]            runs (of each binary, with BASE)
#   LOGS [40000]        logs in the list and in the state
#   CLIENTS [64]        concurrent clients, each waiting for its answer
#   REQUESTS [100000]   measured requests per run
#   BASE, BASE_BIN      the baseline: a git revision to build, or a binary
#   CLIENT [lean]       the load's HTTP client: lean, or net/http (as figures
#                       before issue 13 were taken; it takes ~3x the CPU)
#   PROFILE             write a CPU profile of the (new) witness's first run here
#   INSTRUCTIONS=1      instead of the rate, count the witness's user-space
#                       instructions per request under valgrind's cachegrind,
#                       which the other helpers' load does not change:
#                       INSTR_LOGS [2000] logs, 16 clients, (I(3000 requests) -
#                       I(1000)) / 2000, GOMAXPROCS=1; with BASE, base then new,
#                       RUNS times. Needs valgrind (apt-get install valgrind)
#   WITNESS_FLAGS       more `tidemark witness` flags
#   RESULTS             append each run's figures to this file as JSON lines (bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${RUNS:-3}"
LOGS="${LOGS:-40000}"
CLIENTS="${CLIENTS:-64}"
REQUESTS="${REQUESTS:-100000}"

bench_init
print_env "$@"
# Built here rather than by tools.sh, so this script stands alone.
go build -o "$BENCH_TMP/tidemark" "$REPO_DIR/cmd/tidemark"
go build -o "$BENCH_TMP/witnessload" "$REPO_DIR/bench/witnessload"
base_bin="${BASE_BIN:-}"
if [[ -n "${BASE:-}" && -z "$base_bin" ]]; then
  mkdir "$BENCH_TMP/base"
  git -C "$REPO_DIR" archive "$BASE" | tar -x -C "$BENCH_TMP/base"
  (cd "$BENCH_TMP/base" && go build -o "$BENCH_TMP/tidemark-base" ./cmd/tidemark)
  base_bin="$BENCH_TMP/tidemark-base"
  echo "base:        $BASE ($(git -C "$REPO_DIR" rev-parse --short "$BASE"))"
fi
if [[ "${INSTRUCTIONS:-0}" == 1 ]]; then
  command -v valgrind >/dev/null || { echo "INSTRUCTIONS=1 needs valgrind (apt-get install valgrind)" >&2; exit 1; }
  cat >"$BENCH_TMP/vg.sh" <<'EOF'
#!/usr/bin/env bash
# The witness VG_BIN under cachegrind, counting into VG_OUT. One P and no
# asynchronous preemption: valgrind runs one thread at a time, and its tools
# trip over Go's preemption signals.
export GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1
exec valgrind --log-file="$VG_OUT.log" --tool=cachegrind --cache-sim=no --cachegrind-out-file="$VG_OUT" "$VG_BIN" "$@"
EOF
  chmod +x "$BENCH_TMP/vg.sh"
  # instructions LABEL BIN RUN: user-space instructions per add-checkpoint.
  instructions() {
    local n out i1 i3
    for n in 1000 3000; do
      out="$BENCH_TMP/vg-$1-$3-$n"
      VG_BIN="$2" VG_OUT="$out.cg" "$BENCH_TMP/witnessload" --tidemark "$BENCH_TMP/vg.sh" --logs "${INSTR_LOGS:-2000}" \
        --clients 16 --requests "$n" --client "${CLIENT:-lean}" --witness-flags "${WITNESS_FLAGS:-}" >"$out.txt"
    done
    i1="$(sed -n 's/^summary: //p' "$BENCH_TMP/vg-$1-$3-1000.cg")"
    i3="$(sed -n 's/^summary: //p' "$BENCH_TMP/vg-$1-$3-3000.cg")"
    [[ -n "$i1" && -n "$i3" ]] || { echo "cachegrind counted nothing: see $BENCH_TMP/vg-$1-$3-*.cg.log (KEEP_TMP=1)" >&2; exit 1; }
    echo $(((i3 - i1) / 2000))
  }
  echo "instructions: cachegrind, ${INSTR_LOGS:-2000} logs, 16 clients, (I(3000) - I(1000)) / 2000, GOMAXPROCS=1"
  new_i=() base_i=()
  for run in $(seq 1 "$RUNS"); do
    if [[ -n "$base_bin" ]]; then
      base_i+=("$(instructions base "$base_bin" "$run")")
      echo "run $run: base ${base_i[-1]} instructions/request"
    fi
    new_i+=("$(instructions new "$BENCH_TMP/tidemark" "$run")")
    echo "run $run: new ${new_i[-1]} instructions/request"
  done
  echo
  new_m="$(printf "%s\n" "${new_i[@]}" | median)"
  line="median instructions per add-checkpoint: new $new_m (runs: ${new_i[*]})"
  if [[ -n "$base_bin" ]]; then
    base_m="$(printf "%s\n" "${base_i[@]}" | median)"
    line+=", base $base_m (runs: ${base_i[*]}): ratio $(ratio "$new_m" "$base_m")"
  fi
  echo "$line"
  exit 0
fi

args=(--tidemark "$BENCH_TMP/tidemark" --logs "$LOGS" --clients "$CLIENTS" --requests "$REQUESTS"
  --runs "$RUNS" --data "$BENCH_TMP/w" --client "${CLIENT:-lean}" --witness-flags "${WITNESS_FLAGS:-}")
[[ -n "$base_bin" ]] && args+=(--base "$base_bin")
[[ -n "${PROFILE:-}" ]] && args+=(--profile "$PROFILE")
echo "runs:        $RUNS"
echo "witnessload: $BENCH_TMP/witnessload ${args[*]}"
echo

"$BENCH_TMP/witnessload" "${args[@]}" | tee "$BENCH_TMP/out"
# One record per run and binary ("tidemark", or "tidemark-base" with BASE).
while read -r res; do
  [[ -n "$res" ]] || continue
  who=tidemark
  [[ "$(result_field "$res" binary)" == base ]] && who=tidemark-base
  record witness "$who" add_checkpoint_per_sec requests/s "$(result_field "$res" rate)" nan "\"logs\":$LOGS"
  record witness "$who" p99_ms ms "$(result_field "$res" p99_ms)" nan "\"logs\":$LOGS"
done < <(grep '^RESULT ' "$BENCH_TMP/out")
echo
if [[ -n "$base_bin" ]]; then
  sed -n 's/^MEDIAN witness_add_checkpoint new=\([0-9]*\) base=\([0-9]*\) ratio=\([0-9.]*\) new_runs=\([0-9,]*\) base_runs=\([0-9,]*\) cpu_us_new=\([0-9]*\) cpu_us_base=\([0-9]*\)$/median add-checkpoint\/s: new \1 (runs \4), base \2 (runs \5): ratio \3; witness CPU per request: new \6 us, base \7 us/p' "$BENCH_TMP/out"
else
  rates="$(sed -n 's/^RESULT .* rate=\([0-9]*\) .*/\1/p' "$BENCH_TMP/out")"
  echo "median add-checkpoint/s: $(echo "$rates" | median) (runs: $(echo $rates))"
fi
