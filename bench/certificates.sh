#!/usr/bin/env bash
# Certificate lookups (SPEC §12): hit lookups per second on one core and CPU time per hit, and
# the issuer calls that 1,000 concurrent lookups of one uncached id make. Standalone: it starts
# its own issuer (nginx) and gateway on ports of its own, next to whatever bench/run.sh runs.
#
#   bench/certificates.sh                     # 10 s per measurement, 64 connections
#   bench/certificates.sh --seconds 20 --connections 128
#
# xgate is pinned to CPU 0 with one runtime thread; wrk, oha and the issuer to CPU 1.
set -euo pipefail

seconds=10
connections=64
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds N] [--connections N]" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
bench_tools
# The build to deploy, as bench/run.sh measures it.
bench_build 1

data=127.0.0.1:18060
admin=127.0.0.1:18061
bench_workdir xgate-certificates

# The issuer: a fixed certificate for any id, in the issuing department's own layout (the
# provider's business licence of bench/run.sh; the gateway translates it to the shared layout
# before validating and caching), each call in its access log.
certificate=$(cat "$root/bench/data/response.json")
cat >"$work/issuer.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/issuer.pid;
error_log $work/logs/issuer-error.log warn;
events { worker_connections 4096; }
http {
  access_log $work/logs/issuer-access.log;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:18083 reuseport backlog=4096;
    location /certificates/business-license/ {
      default_type application/json;
      return 200 '$certificate';
    }
  }
}
CONF
taskset -c 1 "$nginx_bin" -c "$work/issuer.conf" -p "$work" &
pids+=($!)
XGATE_WORKERS=1 RUST_LOG=warn XGATE_LISTEN=$data XGATE_ADMIN_LISTEN=$admin \
  taskset -c 0 "$xgate" serve --config "$(bench_gateway_config gateway)" >"$work/logs/xgate.log" 2>&1 &
xgate_pid=$!
pids+=($xgate_pid)

deadline=$((SECONDS + 30))
until curl -sf "http://$data/readyz" >/dev/null; do
  if [ $SECONDS -ge $deadline ]; then echo "xgate did not become ready:" >&2; cat "$work/logs/xgate.log" >&2; exit 1; fi
  sleep 0.1
done
until [ -f "$work/issuer.pid" ]; do sleep 0.1; done

issuer_calls() { wc -l <"$work/logs/issuer-access.log" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
clock_ticks=$(getconf CLK_TCK)
# A valid unified social credit code (GB 32100 check character) for a serial number.
uscc() {
  python3 - "$1" <<'PY'
import sys
alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
first17 = "91350100MA" + sys.argv[1].zfill(7)
total = sum(alphabet.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
print(first17 + alphabet[(31 - total % 31) % 31])
PY
}

warm_id=91350100M000100Y43
lookup_url="http://$data/certificates/business-license/$warm_id"
for token in bench-reader bench-consumer; do
  cache=$(curl -s -o "$work/check.json" -D - -H "Authorization: Bearer $token" -H 'Xgate-Purpose: benchmark' \
    "$lookup_url" | awk 'tolower($1) == "xgate-cache:" { print $2 }' | tr -d '\r')
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" -H 'Xgate-Purpose: benchmark' "$lookup_url")
  if [ "$status" != 200 ]; then echo "the warm-up lookup as $token answered $status:" >&2; cat "$work/check.json" >&2; exit 1; fi
  echo "warm-up as $token: first lookup $cache, then $status"
done

echo
echo "== hit lookups, xgate on one core (CPU 0, 1 runtime thread), wrk -c$connections on CPU 1, ${seconds}s"
echo "   (numbers from a shared machine are indicative only)"
for token in bench-reader bench-consumer; do
  cat >"$work/lookup.lua" <<LUA
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer $token"
wrk.headers["Xgate-Purpose"] = "benchmark"
LUA
  taskset -c 1 wrk -t1 -c"$connections" -d3s -s "$work/lookup.lua" "$lookup_url" >/dev/null
  before=$(cpu_ticks $xgate_pid)
  taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$work/lookup.lua" "$lookup_url" >"$work/wrk.txt"
  after=$(cpu_ticks $xgate_pid)
  requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
  rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")
  errors=$(awk '/Non-2xx|Socket errors/ { print }' "$work/wrk.txt" | tr '\n' ' ')
  layout=$([ "$token" = bench-reader ] && echo "shared layout" || echo "own layout (translated per response)")
  python3 - "$token" "$layout" "$rps" "$requests" "$((after - before))" "$clock_ticks" "$p99" "$errors" <<'PY'
import sys
token, layout, rps, requests, ticks, hz, p99, errors = sys.argv[1:9]
cpu_us = int(ticks) / int(hz) * 1e6 / max(int(requests), 1)
print(f"{token:15} {layout:38} {float(rps):>10,.0f} lookups/s  {cpu_us:6.1f} µs CPU/lookup  p99 {p99}  {errors}")
PY
done

echo
echo "== 1,000 concurrent lookups of one uncached id (oha -n 1000 -c 1000 on CPU 1)"
cold_id=$(uscc $(((RANDOM * 32768 + RANDOM) % 10000000)))
before=$(issuer_calls)
taskset -c 1 oha --no-tui -n 1000 -c 1000 -H 'Authorization: Bearer bench-reader' -H 'Xgate-Purpose: benchmark' \
  "http://$data/certificates/business-license/$cold_id" >"$work/oha.txt"
after=$(issuer_calls)
grep -E '^ *\[[0-9]{3}\] [0-9]+ responses' "$work/oha.txt" | sed 's/^ */   status /'
echo "   issuer calls: $((after - before))"
curl -s "http://$admin/metrics" | grep -E '^xgate_certificate_(issuer_requests_total|cache_entries)'
