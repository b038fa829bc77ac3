#!/usr/bin/env bash
# Runs every Go fuzz target of the module (func FuzzX in a _test.go file) for
# FUZZTIME each (default 60s), one after another, and reports per target the
# executions, the new interesting inputs and whether it found a failure.
#
#   bench/fuzz.sh                 every target, 60 s each
#   FUZZTIME=3s bench/fuzz.sh     CI's short run
#   bench/fuzz.sh FuzzOpen ...    only these targets
#
# A failure's input is kept by Go under the package's testdata/fuzz/FuzzX/
# (commit it: it then runs as a regression test with every `go test`). The
# table goes to stdout and to bench/out/fuzz-<time>.md; exit status 1 when
# any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-60s}"
mkdir -p bench/out
out="bench/out/fuzz-$(date -u +%Y%m%dT%H%M%SZ).md"

# "package-dir TargetName" for every fuzz target, or those named.
mapfile -t targets < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . |
  sed -E 's#^\./(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)$#\1 \2#' | sort)
if [[ $# -gt 0 ]]; then
  want=" $* "
  filtered=()
  for t in "${targets[@]}"; do [[ "$want" == *" ${t#* } "* ]] && filtered+=("$t"); done
  targets=("${filtered[@]}")
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz.sh: no fuzz targets found" >&2; exit 2; }

{
  echo "# Fuzzing, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "$FUZZTIME per target; $(go version | cut -d' ' -f3-); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| package | target | executions | new interesting | finding |"
  echo "|---|---|---:|---:|---|"
} | tee "$out"

failed=0
total=0
for t in "${targets[@]}"; do
  pkg="${t% *}" name="${t#* }"
  log="$(mktemp)"
  finding=""
  for attempt in 1 2; do
    if go test "./$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel "$(nproc)" >"$log" 2>&1; then
      finding="none"
      break
    fi
    # Go's fuzzing engine sometimes ends a run with "context deadline
    # exceeded" and no failing input (a worker busy when -fuzztime ends):
    # that is the harness, not a finding. Run the target once more.
    if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written to' "$log"; then
      finding="none (the fuzzing engine timed out at the end of run $attempt, without a failing input)"
      continue
    fi
    finding="FAILED: $(grep -m1 -E 'Failing input written to|--- FAIL|panic:' "$log" | tr '|' '/' || echo 'see the log')"
    failed=1
    cat "$log" >&2
    break
  done
  # The last progress line: "fuzz: elapsed: 3s, execs: 12345 (4115/sec), new interesting: 2 (total: 9)"
  last="$(grep -E 'fuzz: elapsed: .*execs: [0-9]+' "$log" | tail -1 || true)"
  execs="$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")"
  interesting="$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")"
  total=$((total + ${execs:-0}))
  # No progress line: the run ended while the engine was still replaying
  # the seed corpus (testdata/fuzz), which a short FUZZTIME allows.
  echo "| $pkg | $name | ${execs:-seed corpus only} | ${interesting:--} | $finding |" | tee -a "$out"
  rm -f "$log"
done
{
  echo
  echo "$total executions over ${#targets[@]} targets; $([[ $failed == 0 ]] && echo 'no findings' || echo 'FINDINGS: see above')."
} | tee -a "$out"
exit "$failed"
