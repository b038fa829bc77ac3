#!/usr/bin/env bash
# Regenerates cmd/tidemark/default.pgo, the profile `go build` optimizes the
# tidemark binary with (profile-guided optimization; go build uses a
# default.pgo in the main package's directory by itself, and `go version -m`
# shows it as -pgo=...): CPU profiles of `tidemark log` under the three ingest
# loads (bench/profile.sh ndjson, k8s and add, SECONDS_PROFILED [20] each),
# merged. Build the binary it profiles first (bench/tools.sh); the profile is
# of the code as it is, so rerun this after large changes to the hot path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export SECONDS_PROFILED="${SECONDS_PROFILED:-20}"
out="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-pgo.XXXXXX")"
trap 'rm -rf "$out"' EXIT
for load in ndjson k8s add; do
  "$BENCH_DIR/profile.sh" "$load" "$out/$load.pprof"
done
go tool pprof -proto "$out/ndjson.pprof" "$out/k8s.pprof" "$out/add.pprof" >"$REPO_DIR/cmd/tidemark/default.pgo"
echo "wrote $REPO_DIR/cmd/tidemark/default.pgo ($(wc -c <"$REPO_DIR/cmd/tidemark/default.pgo") bytes)"
