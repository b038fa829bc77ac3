#!/usr/bin/env bash
# Runs the tests behind docs/reliability.md: kills, disk faults, misbehaving
# witnesses, hostile inputs and the memory bound, then every fuzz target for
# FUZZTIME (default 10s), and prints per test its result and what it reported
# (the t.Logf lines: kills, entries acknowledged and lost, 503s, peak memory).
# The disk-fault tests mount tmpfs and loop devices: run as root. Output goes
# to stdout and bench/out/reliability-<time>.md.
#
#   bench/reliability.sh
#   FUZZTIME=60s bench/reliability.sh
#   FUZZTIME=0 bench/reliability.sh     the tests only
set -euo pipefail
cd "$(dirname "$0")/.."
export CI=true # the fault tests fail rather than skip when they cannot mount
export TIDEMARK_TOOLS="${TIDEMARK_TOOLS:-$PWD/.bin}"
[[ -x "$TIDEMARK_TOOLS/hammer" && -x "$TIDEMARK_TOOLS/fsck" ]] || make tools >/dev/null
mkdir -p bench/out
out="bench/out/reliability-$(date -u +%Y%m%dT%H%M%SZ).md"

# package, test pattern
runs=(
  "./cmd/tidemark TestKilledLogKeepsEveryAnsweredIndexAndNeverDuplicatesAKey|TestKilledWitnessNeverRollsBackOrForks|TestKilledWitnessGroupCommitNeverRollsBackOrForks|TestLogOnFullDisk|TestLogOnReadOnlyDisk|TestWitnessOnFullDisk|TestWitnessOnReadOnlyDisk|TestAmplifiedOTLPRequestKeepsTheLogSmall|TestHammerAndFsck"
  "./log TestCrashBetweenAppendAndAnswer|TestK8sAuditRedeliveryAfterACrashFindsTheKeysInTheLeaves|TestPartialAppendFailureIndexesWhatWasWritten|TestReused.*|TestExplicitRetryFindsItsEventUnderTheVariant|TestIdempotencyKeyReusedForOtherEventIs422|TestNumberAndStringIDsAreDifferentKeys|TestK8sAuditEventNotIJSONIsLoggedAsAStandIn|TestStorageErrorAfterTheEntryIsInTheTreeIsNotNothingLogged|TestLogRestartedOnAFullDiskServesReads|TestQueuedAppendFailsWhenTheAppendQueueStops|TestTilesPastTheTreeAreNotServed"
  "./log TestNonCanonicalCosignatureDoesNotStopReceipts|TestWitnessAnsweringGarbageIsAFailure|TestHangingWitnessDoesNotStopTheLog|TestWitnessFloodingASizeAnswerIsNotReadWhole"
  "./log TestSlowClientsDoNotStopOthers|TestSlowClientHoldsOnlyWhatItSent|TestBodyBudgetAnswers503|TestOneWriterStallingBodiesDoesNotStopOtherWriters|TestOneWriterHoldingEventsDoesNotStopOtherWriters|TestAmplifiedBatchesAreRefusedBeforeDecoding|TestOTLPSharedResourceCopiedIntoEveryRecordIsBounded|TestInternalErrorsAnswerARequestIDNotDetails|TestTLSClientCertificateAuthenticatesWriters"
  "./witness TestFullStateAnswers503AndStoresNothing|TestRacingRequestsNeverBothWin|TestConcurrentForksNeverBothWin|TestForkIsRefusedForeverAndLeavesEvidence|TestCommitBeforeAnswer"
  "./client TestSubmitRefusesAReceiptForAnotherEvent|TestSubmitRefusesAReceiptUnderAnotherKey"
  "./cmd/tidemark TestVerifyExistedByIsWhenAQuorumHadCosigned"
)

{
  echo "# Reliability run, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "commit $(git rev-parse --short HEAD); $(go version | cut -d' ' -f3-); $(nproc) cores; kernel $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| test | result | what it reported |"
  echo "|---|---|---|"
} | tee "$out"

failed=0
for r in "${runs[@]}"; do
  pkg="${r%% *}" pattern="${r#* }"
  log="$(mktemp)"
  go test -count=1 -v -run "^(${pattern})\$" "$pkg" >"$log" 2>&1 || failed=1
  # One row per test: its result and its t.Logf lines.
  awk -v pkg="$pkg" '
    /^=== RUN/ { name = $3; sub(/\/.*/, "", name); next }
    /^[ \t]+[a-z_0-9]+_test\.go:[0-9]+: / && name != "" {
      line = $0; sub(/^[ \t]+[a-z_0-9]+_test\.go:[0-9]+: /, "", line); gsub(/\|/, "/", line)
      if (line !~ /^stopped:|^remount/) notes[name] = notes[name] (notes[name] == "" ? "" : "; ") line
      next
    }
    /^--- (PASS|FAIL|SKIP): / {
      n = $3; if (n ~ /\//) next
      r = $2; sub(/:$/, "", r); printf "| `%s` (%s) | %s | %s |\n", n, pkg, r, notes[n]
    }' "$log" | tee -a "$out"
  grep -q -- '--- FAIL' "$log" && { cat "$log" >&2; failed=1; }
  rm -f "$log"
done

echo | tee -a "$out"
if [[ "${FUZZTIME:-10s}" != 0 ]]; then
  FUZZTIME="${FUZZTIME:-10s}" bench/fuzz.sh | tee -a "$out" || failed=1
fi
exit "$failed"
