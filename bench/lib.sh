# Shared helpers for the bench/*.sh scripts. Source it; do not run it.
# shellcheck shell=bash

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$BENCH_DIR/.." && pwd)"
BIN="$BENCH_DIR/.bin"
export GOFLAGS="${GOFLAGS:--mod=mod}"

# RESULTS=FILE: each script appends its figures to FILE as lines of JSON (see record below
# and bench/README.md, "Machine-readable results"); made absolute here, before any cd.
if [[ -n "${RESULTS:-}" && "$RESULTS" != /* ]]; then RESULTS="$PWD/$RESULTS"; fi

# Every server/process a script starts is recorded here and killed on exit.
BENCH_PIDS=()
BENCH_TMP=""
# Every MySQL database a script creates (mysql_create_db) is dropped on exit.
BENCH_DBS=()

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]:-}"; do
    [[ -n "$pid" ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      # give it up to 10 s to stop gracefully, then insist
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  local db
  for db in "${BENCH_DBS[@]:-}"; do
    [[ -n "$db" ]] && mysql_drop_db "$db"
  done
  BENCH_DBS=()
  if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" && "${KEEP_TMP:-0}" != 1 ]]; then
    rm -rf "$BENCH_TMP"
  fi
}

bench_init() {
  BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-bench.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# stop_pid PID: stop one server we started and forget it.
stop_pid() {
  local pid="$1" p keep=()
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for p in "${BENCH_PIDS[@]:-}"; do [[ "$p" == "$pid" || -z "$p" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]:-}")
}

print_env() {
  echo "== environment"
  echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "go:      $(go version)"
  echo "nproc:   $(nproc)"
  echo "memory:  $(free -g | awk '/^Mem:/ {print "total " $2 " GiB, used " $3 ", free " $4 ", available " $7}')"
  echo "kernel:  $(uname -r)"
  echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
  local desc commit
  desc="$(git -C "$REPO_DIR" describe --always --dirty --tags 2>/dev/null || echo 'no commits')"
  commit="$(git -C "$REPO_DIR" rev-parse HEAD 2>/dev/null || echo 'none')"
  echo "repo:    $REPO_DIR ($desc, commit $commit)"
  echo "script:  $0 $*"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now (pure bash),
# below Linux's ephemeral range (32768+), so that no client connection takes it
# between this check and the server's bind.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free port found" >&2; return 1
}

# wait_ready URL PID [SECONDS]: poll GET URL until 200, fail if PID dies.
wait_ready() {
  local url="$1" pid="$2" secs="${3:-30}" i
  for i in $(seq 1 $(( secs * 10 ))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "server (pid $pid) exited before becoming ready" >&2
      return 1
    fi
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "server at $url not ready after ${secs}s" >&2
  return 1
}

# median of numbers on stdin (one per line)
median() {
  sort -g | awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
}

# ratio A B: A/B with 3 decimals
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a !~ /^[0-9.eE+-]+$/ || b !~ /^[0-9.eE+-]+$/ || b + 0 == 0) print "nan"; else printf "%.3f\n", a / b }'
}

need_bin() {
  local b
  for b in "$@"; do
    if [[ ! -x "$BIN/$b" ]]; then
      echo "missing $BIN/$b: run bench/tools.sh first" >&2
      exit 1
    fi
  done
}

# make_key PREFIX: writes PREFIX.key and PREFIX.pub with bench/keygen.
make_key() {
  "$BIN/keygen" --origin "${BENCH_ORIGIN:-bench.tidemark.example/log}" --out "$1" >/dev/null
}

# start_tidemark DATA_DIR PORT KEYFILE LOGFILE: starts `tidemark log`, sets SERVER_PID.
# Extra flags come from $TIDEMARK_FLAGS (word-split on purpose).
start_tidemark() {
  local data="$1" port="$2" key="$3" logf="$4"
  # shellcheck disable=SC2086
  "${TIDEMARK_BIN:-$BIN/tidemark}" log --data "$data" --listen "127.0.0.1:$port" --key "$key" ${TIDEMARK_FLAGS:-} >"$logf" 2>&1 &
  SERVER_PID=$!
  BENCH_PIDS+=("$SERVER_PID")
  if ! wait_ready "http://127.0.0.1:$port/checkpoint" "$SERVER_PID" "${READY_TIMEOUT:-30}"; then
    echo "--- tail of $logf" >&2; tail -n 30 "$logf" >&2; return 1
  fi
}

# snapshot_tidemark: copies bench/.bin/tidemark into this run's temp dir and uses the copy,
# so that a rebuild during the benchmark (tools.sh run by someone else) cannot mix binaries;
# prints which commit it was built from.
snapshot_tidemark() {
  [[ -x "$BIN/tidemark" ]] || return 0
  cp "$BIN/tidemark" "$BENCH_TMP/tidemark"
  TIDEMARK_BIN="$BENCH_TMP/tidemark"
  local info
  info="$(go version -m "$TIDEMARK_BIN" 2>/dev/null | awk '$2 ~ /^vcs\.(revision|time|modified)=/ {printf "%s ", $2}')"
  echo "tidemark binary: built $(date -u -r "$BIN/tidemark" +%Y-%m-%dT%H:%M:%SZ), ${info:-no vcs info, }sha256 $(sha256sum "$TIDEMARK_BIN" | cut -c1-16)"
}

# start_conformance DATA_DIR PORT KEYFILE LOGFILE: Tessera's conformance/posix, sets SERVER_PID.
# Extra flags come from $CONFORMANCE_FLAGS.
start_conformance() {
  local data="$1" port="$2" key="$3" logf="$4"
  # shellcheck disable=SC2086
  "$BIN/posix" --storage_dir "$data" --listen "127.0.0.1:$port" --private_key "$key" ${CONFORMANCE_FLAGS:-} >"$logf" 2>&1 &
  SERVER_PID=$!
  BENCH_PIDS+=("$SERVER_PID")
  if ! wait_ready "http://127.0.0.1:$port/checkpoint" "$SERVER_PID" "${READY_TIMEOUT:-30}"; then
    echo "--- tail of $logf" >&2; tail -n 30 "$logf" >&2; return 1
  fi
}

# go_duration_seconds D: a Go time.Duration string (1m2.5s, 7.25s, 850ms, 1h0m3s) in seconds.
go_duration_seconds() {
  awk -v d="$1" 'BEGIN {
    total = 0; s = d
    while (length(s) > 0) {
      if (!match(s, /^[0-9.]+/)) { print "nan"; exit }
      num = substr(s, 1, RLENGTH) + 0; s = substr(s, RLENGTH + 1)
      if (match(s, /^(h|ms|m|s|us|µs|ns)/)) { unit = substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1) }
      else { print "nan"; exit }
      if (unit == "h") total += num * 3600
      else if (unit == "m") total += num * 60
      else if (unit == "s") total += num
      else if (unit == "ms") total += num / 1e3
      else if (unit == "us" || unit == "µs") total += num / 1e6
      else if (unit == "ns") total += num / 1e9
    }
    printf "%.3f\n", total
  }'
}

# result_field LINE KEY: the value of KEY=... in a loadgen RESULT line.
result_field() {
  tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'
}

# start_cp_watch URL OUTFILE: polls URL/checkpoint every 0.1 s in the background and
# appends "<unix seconds with ns> <tree size>" whenever the size changes. Sets WATCH_PID.
start_cp_watch() {
  local url="$1" out="$2"
  (
    last=""
    while :; do
      size="$(curl -fsS --max-time 1 "$url/checkpoint" 2>/dev/null | sed -n 2p || true)"
      if [[ -n "$size" && "$size" != "$last" ]]; then
        echo "$(date +%s.%N) $size" >>"$out"
        last="$size"
      fi
      sleep 0.1
    done
  ) &
  WATCH_PID=$!
  BENCH_PIDS+=("$WATCH_PID")
}

# steady_rate FILE GOAL: entries/s between the first published checkpoints at or above
# 10% and 90% of GOAL, from a start_cp_watch file ("nan" if it has too few samples).
steady_rate() {
  awk -v g="$2" '
    !a && $2 >= 0.1 * g { t1 = $1; s1 = $2; a = 1 }
    !b && $2 >= 0.9 * g { t2 = $1; s2 = $2; b = 1 }
    END { if (a && b && t2 > t1) printf "%.0f\n", (s2 - s1) / (t2 - t1); else print "nan" }' "$1"
}

# start_server SERVER DATA_DIR KEYFILE LOGFILE: SERVER is tidemark or conformance. Picks a
# free port (retrying if another process takes it first) and sets SERVER_PORT and SERVER_PID.
start_server() {
  local server="$1" attempt
  for attempt in 1 2 3; do
    SERVER_PORT="$(free_port)"
    case "$server" in
      tidemark) start_tidemark "$2" "$SERVER_PORT" "$3" "$4" && return 0 ;;
      conformance) start_conformance "$2" "$SERVER_PORT" "$3" "$4" && return 0 ;;
      *) echo "unknown server $server (tidemark|conformance)" >&2; return 1 ;;
    esac
    stop_pid "$SERVER_PID"
    grep -q 'address already in use' "$4" || return 1
    echo "port $SERVER_PORT was taken; retrying on another" >&2
  done
  return 1
}

# loadgen_run SERVER MODE RUN_NO [loadgen flags...]: a fresh log (new data dir and key),
# one loadgen run against it, then the server is stopped. Prints a "run" line and sets
# LAST_RESULT to loadgen's RESULT line ("" when it failed). Loadgen's full output is
# kept in $BENCH_TMP/SERVER-MODE[-RUN_TAG]-N/loadgen.log (RUN_TAG tells apart runs of one mode).
loadgen_run() {
  local server="$1" mode="$2" n="$3" dir lrc=0
  shift 3
  dir="$BENCH_TMP/$server-$mode${RUN_TAG:+-$RUN_TAG}-$n"
  mkdir -p "$dir"
  make_key "$dir/log"
  if ! start_server "$server" "$dir/data" "$dir/log.key" "$dir/server.log"; then
    echo "run $n $server $mode: FAILED (the server did not start)"
    LAST_RESULT=""
    stop_pid "$SERVER_PID"
    return 0
  fi
  local args=(--url "http://127.0.0.1:$SERVER_PORT" --mode "$mode" "$@")
  # In the background and waited for, so that a signal to this script is handled at once.
  "$BIN/loadgen" "${args[@]}" >"$dir/loadgen.log" 2>&1 &
  local lpid=$!
  BENCH_PIDS+=("$lpid")
  wait "$lpid" || lrc=$?
  stop_pid "$SERVER_PID"
  settle_disk "$dir/data"
  LAST_RESULT="$(grep '^RESULT ' "$dir/loadgen.log" | tail -n 1 || true)"
  if [[ $lrc -ne 0 || -z "$LAST_RESULT" ]]; then
    echo "run $n $server $mode: FAILED (loadgen exit $lrc)"
    echo "--- tail of $dir/loadgen.log"; tail -n 12 "$dir/loadgen.log" | cut -c1-300
    echo "--- tail of $dir/server.log"; tail -n 12 "$dir/server.log" | cut -c1-300
    LAST_RESULT=""
    return 0
  fi
  echo "run $n $server $mode (loadavg $(cut -d' ' -f1 /proc/loadavg)): $LAST_RESULT"
  grep -E '^(errors|retries|last error|2xx answers)' "$dir/loadgen.log" | grep -v -e '^errors (not retried): 0 *$' -e '^retries (503/429 honoured): 0 *$' | sed 's/^/    /' || true
}

# median_of "a b c": median of the non-empty, non-nan words.
median_of() {
  { tr ' ' '\n' <<<"$1" | grep -v -e '^$' -e '^nan$' || true; } | median
}

# settle_disk DIR: between runs, drop a finished run's data (unless KEEP_TMP=1)
# and flush the page cache's dirty pages, so that the next run's fsyncs do not
# wait behind the write-back of the last run's gigabyte of tiles.
settle_disk() {
  [[ "${KEEP_TMP:-0}" == 1 ]] || rm -rf "$1"
  sync
}

# --- MySQL (MariaDB) helpers, for mysql.sh, memory.sh and mysql-witness.sh.
# The server: MYSQL_ADDR [127.0.0.1:3306], MYSQL_USER [root], MYSQL_PASSWORD [empty].
MYSQL_ADDR="${MYSQL_ADDR:-127.0.0.1:3306}"
MYSQL_USER="${MYSQL_USER:-root}"
MYSQL_PASSWORD="${MYSQL_PASSWORD:-}"

# mysql_cli ARGS...: the mysql client on MYSQL_ADDR (password through MYSQL_PWD, not argv).
mysql_cli() {
  MYSQL_PWD="$MYSQL_PASSWORD" mysql -h "${MYSQL_ADDR%:*}" -P "${MYSQL_ADDR##*:}" -u "$MYSQL_USER" --protocol=tcp "$@"
}

# mysql_dsn DB: the Go DSN of database DB (no parameters: Tessera's conformance
# server appends "?multiStatements=true" to it for its schema).
mysql_dsn() {
  echo "$MYSQL_USER:$MYSQL_PASSWORD@tcp($MYSQL_ADDR)/$1"
}

# mysql_create_db NAME: a fresh, empty database (dropped first if it exists);
# recorded so that the exit trap drops it. Names should start tidemark_bench_.
mysql_create_db() {
  mysql_cli -e "DROP DATABASE IF EXISTS \`$1\`; CREATE DATABASE \`$1\`"
  BENCH_DBS+=("$1")
}

# mysql_drop_db NAME: drops it (unless KEEP_TMP=1) and forgets it.
mysql_drop_db() {
  local d keep=()
  if [[ "${KEEP_TMP:-0}" != 1 ]]; then
    mysql_cli -e "DROP DATABASE IF EXISTS \`$1\`" || echo "warning: could not drop database $1" >&2
  fi
  for d in "${BENCH_DBS[@]:-}"; do [[ "$d" == "$1" || -z "$d" ]] || keep+=("$d"); done
  BENCH_DBS=("${keep[@]:-}")
}

# mysql_db_bytes NAME: data + index bytes of its tables (InnoDB's estimate).
mysql_db_bytes() {
  mysql_cli -N -e "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = '$1'"
}

# mysql_tree_size NAME: the integrated tree size in Tessera's TreeState row (sequenced
# and integrated, whether or not a checkpoint was published); empty if there is none yet.
mysql_tree_size() {
  mysql_cli -N -e "SELECT size FROM \`$1\`.TreeState WHERE id = 0" 2>/dev/null || true
}

# start_mysql_server KIND DSN DATA_DIR KEYFILE LOGFILE: KIND is tidemark (`tidemark log
# --mysql DSN --data DATA_DIR`, flags from $TIDEMARK_FLAGS) or conformance (Tessera's
# conformance/mysql with its schema and --publish_interval=1s, tidemark's default
# checkpoint interval; flags from $CONFORMANCE_FLAGS). Picks a free port (retrying if
# another process takes it first); sets SERVER_PORT and SERVER_PID.
start_mysql_server() {
  local kind="$1" dsn="$2" data="$3" key="$4" logf="$5" attempt
  for attempt in 1 2 3; do
    SERVER_PORT="$(free_port)"
    case "$kind" in
      tidemark)
        # shellcheck disable=SC2086
        "${TIDEMARK_BIN:-$BIN/tidemark}" log --mysql "$dsn" --data "$data" --listen "127.0.0.1:$SERVER_PORT" \
          --key "$key" ${TIDEMARK_FLAGS:-} >"$logf" 2>&1 &
        ;;
      conformance)
        # shellcheck disable=SC2086
        "$BIN/conformance-mysql" --mysql_uri "$dsn" --init_schema_path "$BIN/conformance-mysql-schema.sql" \
          --private_key_path "$key" --listen "127.0.0.1:$SERVER_PORT" --publish_interval=1s \
          ${CONFORMANCE_FLAGS:-} >"$logf" 2>&1 &
        ;;
      *) echo "unknown server $kind (tidemark|conformance)" >&2; return 1 ;;
    esac
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    if wait_ready "http://127.0.0.1:$SERVER_PORT/checkpoint" "$SERVER_PID" "${READY_TIMEOUT:-30}"; then
      return 0
    fi
    stop_pid "$SERVER_PID"
    if ! grep -q 'address already in use' "$logf"; then
      echo "--- tail of $logf" >&2; tail -n 30 "$logf" >&2
      return 1
    fi
    echo "port $SERVER_PORT was taken; retrying on another" >&2
  done
  return 1
}

# proc_mem PID: "VmRSS VmHWM" of PID in KiB (from /proc/PID/status), or "nan nan".
proc_mem() {
  awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {if (r == "") print "nan nan"; else print r, h}' "/proc/$1/status" 2>/dev/null || echo "nan nan"
}

# run_fsck URL PUBFILE LOGFILE: Tessera's fsck over a log; prints " fsck=ok" or " fsck=FAILED(...)"
# and returns non-zero on failure (fsck exits 0 even when the check fails: read its log).
run_fsck() {
  if "$BIN/fsck" --storage_url "$1/" --public_key "$2" --N 4 --ui=false >"$3" 2>&1 \
    && ! grep -q 'fsck failed' "$3"; then
    echo " fsck=ok"
  else
    echo " fsck=FAILED($(grep -m1 -o 'fsck failed.*' "$3" | cut -c1-200))"
    return 1
  fi
}

# --- Machine-readable results (RESULTS=FILE), read by bench/report.

# json_str S: S as a JSON string.
json_str() {
  local s="$1"
  s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\t'/\\t}"; s="${s//$'\n'/\\n}"; s="${s//$'\r'/}"
  printf '"%s"' "$s"
}

# json_num V: V if it is a number, else null (a failed run, "nan").
json_num() {
  if [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then printf '%s' "$1"; else printf null; fi
}

# record COMPARISON CONTENDER METRIC UNIT VALUE RUN [MORE_JSON]: when RESULTS is set, appends
# one line of JSON to it: {"script", "comparison", "contender", "metric", "unit", "value"
# (null when VALUE is not a number: a failed run), "run", "loadavg" (1 min, now), "time"}
# plus MORE_JSON (members, e.g. '"rate":50'). One line per run and figure; bench/report
# takes the medians and spreads.
record() {
  [[ -n "${RESULTS:-}" ]] || return 0
  printf '{"script":%s,"comparison":%s,"contender":%s,"metric":%s,"unit":%s,"value":%s,"run":%s,"loadavg":%s,"time":%s%s}\n' \
    "$(json_str "$(basename "$0" .sh)")" "$(json_str "$1")" "$(json_str "$2")" "$(json_str "$3")" "$(json_str "$4")" \
    "$(json_num "$5")" "$(json_num "$6")" "$(json_num "$(cut -d' ' -f1 /proc/loadavg)")" "$(json_str "$(date -u +%FT%TZ)")" \
    "${7:+,$7}" >>"$RESULTS"
}
