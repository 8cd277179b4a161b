# Shared set-up of the benchmark scripts (bench/run.sh, bench/certificates.sh, bench/tls.sh).
# Sourced, not run: each function sets the variables its callers use.
#
#   bench_tools [perf]           nginx, wrk, taskset, python3, curl (Debian) and oha (crates.io),
#                                installed when missing; sets nginx_bin
#   bench_build 0|1              builds the production profile when 1; sets xgate
#   bench_workdir PREFIX         a temporary folder with logs/; sets work and pids, and removes
#                                both (processes and folder) on exit
#   bench_upstream_conf FILE PORT   an nginx answering the ~1 KB business licence on /licenses
#   bench_gateway_config NAME [SYNC]   a copy of bench/config whose audit trail is a fresh database
#                                in $work/NAME, with `[audit] synchronous = SYNC` when given (else
#                                the gateway's default); prints the main file's path
#   bench_store_database         a fresh PostgreSQL database on the server of $XGATE_BENCH_PG_URL
#                                (default postgres://postgres@127.0.0.1:5432/postgres), dropped on
#                                exit after the processes; sets store_url and store_admin_url
#
# Needs `root` (the repository) set by the caller.

bench_tools() {
  local need_apt=()
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
  command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
  command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
  command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  if [ "${1:-}" = psql ] && ! command -v psql >/dev/null 2>&1; then need_apt+=(postgresql-client); fi
  if [ "${1:-}" = perf ] && ! command -v perf >/dev/null 2>&1; then need_apt+=(linux-perf); fi
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== installing ${need_apt[*]} (Debian packages)"
    local as_root=()
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then as_root=(sudo); fi
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v oha >/dev/null 2>&1; then
    echo "== installing oha (constant-rate load generator) from crates.io"
    cargo install oha --locked --quiet
  fi
}

bench_build() {
  if [ "$1" = 1 ]; then
    echo "== building xgate (production profile: release with whole-program optimization)"
    (cd "$root" && cargo build --profile production --quiet)
  fi
  xgate="${CARGO_TARGET_DIR:-$root/target}/production/xgate"
  [ -x "$xgate" ] || { echo "$xgate is missing: run without --no-build" >&2; exit 2; }
}

bench_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  mkdir -p "$work/logs" "$root/bench/results"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${store_database:-}" ]; then
    psql -X -q -d "$store_admin_url" -c "DROP DATABASE IF EXISTS $store_database WITH (FORCE)" || true
  fi
  rm -rf "$work"
}

bench_store_database() {
  store_admin_url=${XGATE_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  local name
  name="xgate_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  psql -X -q -d "$store_admin_url" -c "CREATE DATABASE $name" ||
    { echo "cannot create a database on the server of XGATE_BENCH_PG_URL" >&2; exit 2; }
  store_database=$name
  # The same server, credentials and parameters; the new database (the URL's path).
  local base=${store_admin_url%%\?*} query=""
  [[ "$store_admin_url" == *\?* ]] && query="?${store_admin_url#*\?}"
  store_url="${base%/*}/$name$query"
}

bench_upstream_conf() {
  local response
  response=$(cat "$root/bench/data/response.json")
  cat >"$1" <<EOF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/logs/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$2 reuseport backlog=4096;
    location /licenses {
      default_type application/json;
      return 200 '$response';
    }
  }
}
EOF
}

# A trail that grew over earlier runs (one reached 6 GB) or one shared by two gateways would
# change the cost being measured.
bench_gateway_config() {
  mkdir -p "$work/$1"
  cp -r "$root/bench/config/departments" "$work/$1/departments"
  sed -e "s|^dir = .*|dir = \"$root/bench/schemas\"|" -e "s|^path = .*|path = \"$work/$1/audit.db\"|" \
    "$root/bench/config/xgate.toml" >"$work/$1/xgate.toml"
  if [ -n "${2:-}" ]; then
    sed -i "s|^\[audit\]|[audit]\nsynchronous = \"$2\"|" "$work/$1/xgate.toml"
  fi
  echo "$work/$1/xgate.toml"
}
