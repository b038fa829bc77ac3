#!/usr/bin/env bash
# Installs the benchmark tools into bench/.bin (gitignored):
#   hammer, fsck, posix   Tessera v1.0.4's load tester, checker and POSIX conformance server
#   aws                   Tessera v1.0.4's AWS conformance server (S3 + MySQL)
#   versitygw             versitygw v1.8.0, an S3-compatible server (posix backend)
#   conformance-mysql     Tessera v1.0.4's MySQL conformance server (cmd/conformance/mysql),
#                         with its schema beside it as conformance-mysql-schema.sql
#                         (its --init_schema_path; the file is storage/mysql/schema.sql)
#   keygen, loadgen, k8sload  this folder's helpers
#   tidemark              ./cmd/tidemark (skipped with a warning if it does not build yet)
# Tessera's tools are installed once; FORCE=1 reinstalls them. tidemark, keygen and
# loadgen are rebuilt every time (they change with the repo).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TESSERA_VERSION="${TESSERA_VERSION:-v1.0.4}"
VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
mkdir -p "$BIN"
print_env "$@"
echo "bin:     $BIN"

cd "$REPO_DIR"
echo "== tessera tools ($TESSERA_VERSION), versitygw ($VERSITYGW_VERSION)"
declare -A PKG=(
  [hammer]="github.com/transparency-dev/tessera/internal/hammer@$TESSERA_VERSION"
  [fsck]="github.com/transparency-dev/tessera/cmd/fsck@$TESSERA_VERSION"
  [posix]="github.com/transparency-dev/tessera/cmd/conformance/posix@$TESSERA_VERSION"
  [aws]="github.com/transparency-dev/tessera/cmd/conformance/aws@$TESSERA_VERSION"
  [versitygw]="github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  [conformance-mysql]="github.com/transparency-dev/tessera/cmd/conformance/mysql@$TESSERA_VERSION"
)
for name in hammer fsck posix aws versitygw conformance-mysql; do
  if [[ -x "$BIN/$name" && "${FORCE:-0}" != 1 && ( "$name" != conformance-mysql || -f "$BIN/conformance-mysql-schema.sql" ) ]]; then
    echo "$name: already installed"
    continue
  fi
  if [[ "$name" == conformance-mysql ]]; then
    # go install names the binary after its package (mysql): install it into a
    # directory of its own and rename it, so that it cannot be taken for the client.
    gobin="$BIN/.conformance-mysql"
    mkdir -p "$gobin"
    echo "+ GOBIN=$gobin go install ${PKG[$name]} && mv $gobin/mysql $BIN/$name"
    GOFLAGS= GOBIN="$gobin" go install "${PKG[$name]}"
    mv "$gobin/mysql" "$BIN/$name"
    rmdir "$gobin"
    # Its schema (--init_schema_path), from the same module version.
    moddir="$(GOFLAGS= go mod download -json "github.com/transparency-dev/tessera@$TESSERA_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    echo "+ cp $moddir/storage/mysql/schema.sql $BIN/conformance-mysql-schema.sql"
    cp "$moddir/storage/mysql/schema.sql" "$BIN/conformance-mysql-schema.sql"
    chmod 644 "$BIN/conformance-mysql-schema.sql"
    echo "$name: installed"
    continue
  fi
  echo "+ GOBIN=$BIN go install ${PKG[$name]}"
  # go install pkg@version ignores the current module; GOFLAGS=-mod=mod is not allowed there.
  GOFLAGS= GOBIN="$BIN" go install "${PKG[$name]}"
  if [[ ! -x "$BIN/$name" ]]; then
    echo "error: go install ${PKG[$name]} did not produce $BIN/$name" >&2
    exit 1
  fi
  echo "$name: installed"
done

echo "== bench helpers"
echo "+ go build -o $BIN/keygen ./bench/keygen"
go build -o "$BIN/keygen" ./bench/keygen
echo "+ go build -o $BIN/loadgen ./bench/loadgen"
go build -o "$BIN/loadgen" ./bench/loadgen
echo "+ go build -o $BIN/k8sload ./bench/k8sload"
go build -o "$BIN/k8sload" ./bench/k8sload

echo "== tidemark"
echo "+ go build -o $BIN/tidemark ./cmd/tidemark"
if go build -o "$BIN/tidemark" ./cmd/tidemark; then
  echo "tidemark: built ($(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo 'no commits'))"
else
  echo "warning: ./cmd/tidemark does not build; the tidemark benchmarks cannot run" >&2
  rm -f "$BIN/tidemark"
  [[ "${REQUIRE_TIDEMARK:-0}" == 1 ]] && exit 1
fi
ls -l "$BIN"
