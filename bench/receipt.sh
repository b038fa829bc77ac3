#!/usr/bin/env bash
# Time from POST /v1/events?wait=witnessed to the receipt, at 100 and 1,000
# events/s, on `tidemark log` with three `tidemark witness` processes
# (quorum 2 of 3): once on plain loopback, once with 100 ms added to every
# witness request by a delaying proxy. See bench/README.md.
# Knobs: RATES (100,1000), DURATION (20s), LATENCIES (0,100ms),
# LOG_FLAGS (none: the log's defaults),
# BASE (a baseline to alternate with, ABBA: a tidemark binary, or a git
# revision built into bench/.bin/tidemark-base-REV), RUNS (1).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:--mod=mod}"
mkdir -p bench/.bin
go build -o bench/.bin/tidemark ./cmd/tidemark
base_args=()
if [[ -n "${BASE:-}" ]]; then
  base_bin="$BASE"
  if [[ ! -x "$BASE" || -d "$BASE" ]]; then
    rev="$(git rev-parse --short "$BASE^{commit}")"
    base_bin="bench/.bin/tidemark-base-$rev"
    if [[ ! -x "$base_bin" ]]; then
      src="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-base-src.XXXXXX")"
      git archive "$rev" | tar -x -C "$src"
      (cd "$src" && go build -o "$OLDPWD/$base_bin" ./cmd/tidemark)
      rm -rf "$src"
    fi
  fi
  base_args=(--base "$base_bin")
  echo "# base: $base_bin ($(sha256sum "$base_bin" | cut -c1-16))"
fi
echo "# $(date -u +%FT%TZ) $(go version) nproc=$(nproc) $(uname -r) commit=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo +dirty) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "# go run ./bench/receipt --tidemark bench/.bin/tidemark ${base_args[*]} --runs ${RUNS:-1} --rates ${RATES:-100,1000} --duration ${DURATION:-20s} --latencies ${LATENCIES:-0,100ms} --log-flags '${LOG_FLAGS:-}'"
go run ./bench/receipt --tidemark bench/.bin/tidemark "${base_args[@]}" --runs "${RUNS:-1}" --rates "${RATES:-100,1000}" --duration "${DURATION:-20s}" \
  --latencies "${LATENCIES:-0,100ms}" --log-flags "${LOG_FLAGS:-}"
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
