#!/usr/bin/env bash
# add-checkpoint throughput of `tidemark witness` with durable state (SQLite,
# WAL, synchronous=FULL, group commit): bench/witnessload makes LOGS log keys,
# starts the witness on a fresh data directory, preloads every log into the
# state, then CLIENTS concurrent clients post REQUESTS checkpoints that each
# advance one log by one entry with a valid consistency proof. Prints each
# run and the median (target >= 10,000 requests/s on 2 cores, issue 13; the witness
# network's top profile is 100/s across 40,000 logs).
#
# Environment (defaults in brackets):
#   RUNS [3]            runs
#   LOGS [40000]        logs in the list and in the state
#   CLIENTS [64]        concurrent clients, each waiting for its answer
#   REQUESTS [100000]   measured requests per run
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
echo "runs:        $RUNS"
echo "witnessload: $BENCH_TMP/witnessload --tidemark $BENCH_TMP/tidemark --logs $LOGS --clients $CLIENTS --requests $REQUESTS"
echo

rates=()
for run in $(seq 1 "$RUNS"); do
  out="$("$BENCH_TMP/witnessload" --tidemark "$BENCH_TMP/tidemark" --logs "$LOGS" --clients "$CLIENTS" \
    --requests "$REQUESTS" --data "$BENCH_TMP/w$run" --witness-flags "${WITNESS_FLAGS:-}")"
  echo "$out" | sed "s/^/run $run: /"
  rates+=("$(echo "$out" | sed -n 's/^RESULT .* rate=\([0-9]*\) .*/\1/p')")
  res="$(grep '^RESULT ' <<<"$out" | tail -n 1)"
  record witness tidemark add_checkpoint_per_sec requests/s "$(result_field "$res" rate)" "$run" "\"logs\":$LOGS"
  record witness tidemark p99_ms ms "$(result_field "$res" p99_ms)" "$run" "\"logs\":$LOGS"
  rm -rf "$BENCH_TMP/w$run"
done
echo
echo "median add-checkpoint/s: $(printf "%s\n" "${rates[@]}" | median) (runs: ${rates[*]})"
