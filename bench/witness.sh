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
#   WITNESS_FLAGS       more `tidemark witness` flags
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
args=(--tidemark "$BENCH_TMP/tidemark" --logs "$LOGS" --clients "$CLIENTS" --requests "$REQUESTS"
  --runs "$RUNS" --data "$BENCH_TMP/w" --client "${CLIENT:-lean}" --witness-flags "${WITNESS_FLAGS:-}")
[[ -n "$base_bin" ]] && args+=(--base "$base_bin")
[[ -n "${PROFILE:-}" ]] && args+=(--profile "$PROFILE")
echo "runs:        $RUNS"
echo "witnessload: $BENCH_TMP/witnessload ${args[*]}"
echo

"$BENCH_TMP/witnessload" "${args[@]}" | tee "$BENCH_TMP/out"
echo
if [[ -n "$base_bin" ]]; then
  sed -n 's/^MEDIAN witness_add_checkpoint new=\([0-9]*\) base=\([0-9]*\) ratio=\([0-9.]*\) new_runs=\([0-9,]*\) base_runs=\([0-9,]*\) cpu_us_new=\([0-9]*\) cpu_us_base=\([0-9]*\)$/median add-checkpoint\/s: new \1 (runs \4), base \2 (runs \5): ratio \3; witness CPU per request: new \6 us, base \7 us/p' "$BENCH_TMP/out"
else
  rates="$(sed -n 's/^RESULT .* rate=\([0-9]*\) .*/\1/p' "$BENCH_TMP/out")"
  echo "median add-checkpoint/s: $(echo "$rates" | median) (runs: $(echo $rates))"
fi
