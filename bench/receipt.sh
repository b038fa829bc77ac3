#!/usr/bin/env bash
# Time from POST /v1/events?wait=witnessed to the receipt, at 100 and 1,000
# events/s, on `tidemark log` with three `tidemark witness` processes
# (quorum 2 of 3): once on plain loopback, once with 100 ms added to every
# witness request by a delaying proxy. See bench/README.md.
# Knobs: RATES (100,1000), DURATION (20s), WARMUP (3s), LATENCIES (0,100ms),
# LOG_FLAGS (--checkpoint-interval 500ms; see bench/README.md for why; LOG_FLAGS=""
# runs the log's defaults), RUNS (1: runs of every rate per setup, rates in order on
# odd runs and reversed on even runs), RESULTS (append each run's figures, with the
# latency distribution, to this file as JSON lines; bench/README.md).
set -euo pipefail
if [[ -n "${RESULTS:-}" && "$RESULTS" != /* ]]; then RESULTS="$PWD/$RESULTS"; fi
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--mod=mod}"
mkdir -p bench/.bin
go build -o bench/.bin/tidemark ./cmd/tidemark
echo "# $(date -u +%FT%TZ) $(go version) nproc=$(nproc) $(uname -r) commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo +dirty) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# go run ./bench/receipt --tidemark bench/.bin/tidemark --rates ${RATES:-100,1000} --duration ${DURATION:-20s} --warmup ${WARMUP:-3s} --latencies ${LATENCIES:-0,100ms} --log-flags '${LOG_FLAGS---checkpoint-interval 500ms}' --runs ${RUNS:-1}"
go run ./bench/receipt --tidemark bench/.bin/tidemark --rates "${RATES:-100,1000}" --duration "${DURATION:-20s}" \
  --warmup "${WARMUP:-3s}" --latencies "${LATENCIES:-0,100ms}" --log-flags "${LOG_FLAGS---checkpoint-interval 500ms}" \
  --runs "${RUNS:-1}" --results "${RESULTS:-}"
