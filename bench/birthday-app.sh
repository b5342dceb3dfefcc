#!/usr/bin/env bash
# Benchmarks the sample app over loopback with wrk on this machine: GET and PUT
# requests/s and p99 latency on SQLite, MariaDB and PostgreSQL, and resident
# memory at idle. Prints a Markdown table on stdout, progress on stderr.
#
#   bench/birthday-app.sh                 # all three backends
#   BACKENDS=sqlite bench/birthday-app.sh
#
# Settings (environment): DURATION (10s), CONNECTIONS (32), THREADS (2),
# BENCH_USERS (1000 users saved before the GET run). MariaDB and PostgreSQL
# come from BIRTHDAY_TEST_MYSQL_URL / BIRTHDAY_TEST_POSTGRES_URL, or are
# started with scripts/testdb for the run. The service logs every request,
# as in production; its log goes to a file.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
backends=${BACKENDS:-sqlite mysql postgres}
export BENCH_USERS=${BENCH_USERS:-1000}
export BENCH_DIR=$root/bench/birthday-app

log() { printf 'bench: %s\n' "$*" >&2; }
command -v wrk >/dev/null || { log "wrk is not installed: run scripts/deps"; exit 1; }

work=$(mktemp -d /tmp/birthday-bench.XXXXXX)
app_pid=
started_db=
cleanup() {
  if [ -n "$app_pid" ]; then kill "$app_pid" 2>/dev/null || true; wait "$app_pid" 2>/dev/null || true; fi
  if [ -n "$started_db" ]; then scripts/testdb down "$work/db" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

log "building the service (CGO_ENABLED=0, as in the image)"
(cd examples/birthday-app && CGO_ENABLED=0 go build -trimpath -o "$work/birthday-app" .)

if [[ " $backends " == *" mysql "* || " $backends " == *" postgres "* ]]; then
  if [ -z "${BIRTHDAY_TEST_MYSQL_URL:-}" ] || [ -z "${BIRTHDAY_TEST_POSTGRES_URL:-}" ]; then
    log "starting MariaDB and PostgreSQL with scripts/testdb"
    eval "$(scripts/testdb up "$work/db")"
    started_db=1
  fi
fi

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

start_app() { # start_app DATABASE_URL
  : >"$work/app.log"
  "$work/birthday-app" -host 127.0.0.1 -port 0 -database-url "$1" 2>>"$work/app.log" &
  app_pid=$!
  for _ in $(seq 1 200); do
    addr=$(grep -o '"msg":"listening","addr":"[^"]*"' "$work/app.log" | sed 's/.*"addr":"//; s/"$//' || true)
    [ -n "$addr" ] && return 0
    kill -0 "$app_pid" 2>/dev/null || break
    sleep 0.1
  done
  log "the service did not start:"
  cat "$work/app.log" >&2
  exit 1
}

stop_app() {
  kill -TERM "$app_pid"
  wait "$app_pid" || true
  app_pid=
}

# run_wrk SCRIPT -> "req/s p99 non2xx cpu-µs-per-request"
# The last figure is the service's own CPU time (user + system) per request,
# which other load on the machine does not change much.
run_wrk() {
  local out before after
  before=$(cpu_ticks "$app_pid")
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$BENCH_DIR/$1" "http://$addr")
  after=$(cpu_ticks "$app_pid")
  echo "$out" >>"$work/wrk.log"
  local rps p99 bad n
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%d", $2 }')
  p99=$(echo "$out" | awk '$1 == "99%" { print $2 }')
  bad=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $5 }')
  n=$(echo "$out" | awk '/ requests in / { print $1 }')
  echo "$rps $p99 ${bad:-0} $(((after - before) * 1000000 / tck / n))"
}

printf '| backend | GET req/s | GET p99 | GET CPU/req | PUT req/s | PUT p99 | PUT CPU/req | errors | RSS idle at start | RSS idle after load |\n'
printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for backend in $backends; do
  case $backend in
  sqlite) url="sqlite:$work/bench.db"; rm -f "$work"/bench.db* ;;
  mysql) url=$BIRTHDAY_TEST_MYSQL_URL ;;
  postgres) url=$BIRTHDAY_TEST_POSTGRES_URL ;;
  *) log "unknown backend $backend: use sqlite, mysql or postgres"; exit 1 ;;
  esac
  log "$backend: starting"
  start_app "$url"
  sleep 1
  rss_start=$(rss_mib "$app_pid")
  log "$backend: saving $BENCH_USERS users"
  wrk -t1 -c4 -d3s -s "$BENCH_DIR/seed.lua" "http://$addr" >/dev/null
  log "$backend: GET for $duration with $connections connections"
  read -r get_rps get_p99 get_bad get_cpu < <(run_wrk get.lua)
  log "$backend: PUT for $duration with $connections connections"
  read -r put_rps put_p99 put_bad put_cpu < <(run_wrk put.lua)
  sleep 3
  rss_after=$(rss_mib "$app_pid")
  stop_app
  printf '| %s | %s | %s | %s µs | %s | %s | %s µs | %s | %s MiB | %s MiB |\n' \
    "$backend" "$get_rps" "$get_p99" "$get_cpu" "$put_rps" "$put_p99" "$put_cpu" "$((get_bad + put_bad))" "$rss_start" "$rss_after"
done
