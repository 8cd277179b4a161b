#!/usr/bin/env bash
# Mutual TLS: xgate-full terminating TLS next to nginx terminating TLS as a plain reverse proxy,
# in one run, on loopback, keep-alive (each connection's handshake happens once, at the start of
# a run: 32 handshakes against tens of thousands of requests), and the same two over plain HTTP
# with the same load generator, so what TLS adds to each shows. Standalone: its own ports
# (upstream :18481, nginx :18482 TLS and :18483 plain, xgate :18480 TLS / :18470 plain), next to
# whatever bench/run.sh runs.
#
#   bench/tls.sh                          # 3 interleaved rounds of 10 s per target
#   bench/tls.sh --rounds 5 --seconds 20
#   bench/tls.sh --no-build               # measure the production build as it is
#
# Both proxies: TLS 1.3 (what both negotiate), ECDSA P-256 certificates from `xgate tls init`,
# client certificates required and verified against the same CA; the client is the
# bench-consumer's certificate. The proxy under test is pinned to CPU 0 (xgate with one runtime
# thread, nginx with one worker); oha (the load generator, which presents client certificates)
# and the upstream nginx to CPU 1.
set -euo pipefail

rounds=3
seconds=10
connections=32
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--rounds N] [--seconds N] [--connections N] [--no-build]" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
bench_tools
bench_build "$build"

bench_workdir xgate-tls-bench
mkdir -p "$work/results"

# The benchmark configuration of bench/run.sh with [tls]: certificates from `xgate tls init`.
cp -r "$root/bench/config" "$work/config"
cp -r "$root/bench/schemas" "$work/schemas"
"$xgate" tls init "$work/config/tls" --config "$work/config/xgate.toml" >/dev/null
cat >>"$work/config/xgate.toml" <<EOF

[tls]
cert = "tls/gateway.pem"
key = "tls/gateway-key.pem"
client_ca = "tls/ca.pem"
EOF
tls="$work/config/tls"
# The same gateway without [tls], for the plain-HTTP reference.
cp -r "$root/bench/config" "$work/plain"

bench_upstream_conf "$work/upstream.conf" 18481
cat >"$work/proxy.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/proxy.pid;
error_log $work/logs/proxy-error.log warn;
events { worker_connections 4096; }
http {
  access_log $work/logs/proxy-access.log;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:18481;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:18482 ssl reuseport backlog=4096;
    ssl_certificate $tls/gateway.pem;
    ssl_certificate_key $tls/gateway-key.pem;
    ssl_client_certificate $tls/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
  server {
    listen 127.0.0.1:18483 reuseport backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF
# The provider's upstream is this script's nginx.
sed -i 's#127.0.0.1:18081#127.0.0.1:18481#g' "$work"/config/departments/*.toml "$work"/plain/departments/*.toml
sed -i 's#^path = .*#path = "'"$work"'/results/plain-audit.db"#' "$work/plain/xgate.toml"
sed -i 's#^dir = .*#dir = "'"$work"'/schemas"#' "$work/plain/xgate.toml"
sed -i 's#^path = .*#path = "'"$work"'/results/audit.db"#' "$work/config/xgate.toml"

taskset -c 1 "$nginx_bin" -c "$work/upstream.conf" -p "$work" &
pids+=($!)
taskset -c 0 "$nginx_bin" -c "$work/proxy.conf" -p "$work" &
pids+=($!)
XGATE_WORKERS=1 RUST_LOG=info XGATE_LISTEN=127.0.0.1:18480 XGATE_ADMIN_LISTEN=127.0.0.1:18490 \
  taskset -c 0 "$xgate" serve --config "$work/config/xgate.toml" >"$work/logs/xgate.log" 2>&1 &
xgate_pid=$!
pids+=($xgate_pid)
XGATE_WORKERS=1 RUST_LOG=info XGATE_LISTEN=127.0.0.1:18470 XGATE_ADMIN_LISTEN=127.0.0.1:18471 \
  taskset -c 0 "$xgate" serve --config "$work/plain/xgate.toml" >"$work/logs/xgate-plain.log" 2>&1 &
plain_pid=$!
pids+=($plain_pid)

client=(--cacert "$tls/ca.pem" --cert "$tls/departments/bench-consumer.pem" --key "$tls/departments/bench-consumer-key.pem")
wait_for() {
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "$@"; then return 0; fi
    sleep 0.05
  done
  echo "$* did not come up" >&2
  cat "$work/logs/xgate.log" >&2
  exit 1
}
wait_for http://127.0.0.1:18481/licenses
wait_for "${client[@]}" https://localhost:18482/licenses
wait_for http://127.0.0.1:18490/readyz
wait_for http://127.0.0.1:18471/readyz
proxy_worker=$(pgrep -P "$(cat "$work/proxy.pid")" | head -n 1)

declare -A url pid_of
url[nginx-tls]="https://localhost:18482/licenses"
url[xgate-full-tls]="https://localhost:18480/exchange/bench-provider/full"
url[nginx-http]="http://127.0.0.1:18483/licenses"
url[xgate-full-http]="http://127.0.0.1:18470/exchange/bench-provider/full"
pid_of[nginx-tls]=$proxy_worker
pid_of[xgate-full-tls]=$xgate_pid
pid_of[nginx-http]=$proxy_worker
pid_of[xgate-full-http]=$plain_pid
targets=(nginx-tls xgate-full-tls nginx-http xgate-full-http)
# Over TLS the client certificate identifies; over plain HTTP the bearer token does.
credentials() {
  case "$1" in
    *-tls) printf '%s\n' "${client[@]}" ;;
    *) printf '%s\n' -H 'Authorization: Bearer bench-consumer' ;;
  esac
}

for target in "${targets[@]}"; do
  mapfile -t auth < <(credentials "$target")
  status=$(curl -s -o "$work/check.json" -w '%{http_code} %{ssl_verify_result}' "${auth[@]}" -X POST \
    -H 'Content-Type: application/json' --data-binary @"$root/bench/data/request.json" "${url[$target]}")
  if [ "$status" != "200 0" ]; then
    echo "$target answered $status:" >&2
    cat "$work/check.json" >&2
    exit 1
  fi
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
load() {
  local auth
  mapfile -t auth < <(credentials "$3")
  taskset -c 1 oha --no-tui --output-format json -z "$1" -c "$connections" "${auth[@]}" \
    -m POST -H 'Content-Type: application/json' -D "$root/bench/data/request.json" "$2"
}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw="$root/bench/results/$stamp-tls.jsonl"

echo "== warm-up"
for target in "${targets[@]}"; do load 3s "${url[$target]}" "$target" >/dev/null; done

echo "== saturation: $rounds rounds x ${seconds}s per target, interleaved, $connections keep-alive connections"
for round in $(seq 1 "$rounds"); do
  for target in "${targets[@]}"; do
    pid=${pid_of[$target]}
    before=$(cpu_ticks "$pid")
    load "${seconds}s" "${url[$target]}" "$target" >"$work/oha.json"
    after=$(cpu_ticks "$pid")
    python3 - "$work/oha.json" "$target" "$round" "$((after - before))" "$(getconf CLK_TCK)" >>"$raw" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
codes = data.get("statusCodeDistribution", {})
print(json.dumps({"round": int(sys.argv[3]), "kind": "tls-saturation", "target": sys.argv[2],
                  "rps": data["summary"]["requestsPerSec"], "requests": sum(codes.values()),
                  "cpu_ticks": int(sys.argv[4]), "clk_tck": int(sys.argv[5]), "status": codes}))
PY
    tail -n 1 "$raw" | python3 -c 'import json, sys
r = json.load(sys.stdin)
print("  round %s %-16s %9.0f req/s  %s" % (r["round"], r["target"], r["rps"], r["status"]))'
  done
done

python3 - "$raw" "$rounds" "$seconds" "$connections" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
summary = {}
for target in ("nginx-tls", "xgate-full-tls", "nginx-http", "xgate-full-http"):
    runs = [r for r in rows if r["target"] == target]
    summary[target] = {
        "rps": statistics.mean(r["rps"] for r in runs),
        "rps_min": min(r["rps"] for r in runs),
        "rps_max": max(r["rps"] for r in runs),
        "cpu_us": statistics.mean(r["cpu_ticks"] / r["clk_tck"] / r["requests"] * 1e6 for r in runs if r["requests"]),
        "non_200": sum(n for r in runs for code, n in r["status"].items() if code != "200"),
    }
n = summary["nginx-tls"]
print()
print(f"{'target':<16} {'req/s':>8} {'(min-max)':>15} {'vs nginx':>8} {'CPU µs/req':>10} {'vs nginx':>8} {'non-200':>7}")
for target, s in summary.items():
    n = summary["nginx-" + target.rsplit("-", 1)[1]]
    print(f"{target:<16} {s['rps']:>8.0f} {s['rps_min']:>7.0f}-{s['rps_max']:<7.0f} {s['rps'] / n['rps']:>7.2f}x "
          f"{s['cpu_us']:>10.1f} {s['cpu_us'] / n['cpu_us']:>7.2f}x {s['non_200']:>7}")
print()
for proxy in ("nginx", "xgate-full"):
    added = summary[proxy + "-tls"]["cpu_us"] - summary[proxy + "-http"]["cpu_us"]
    print(f"TLS adds {added:.1f} CPU µs per request to {proxy}")
print()
print(f"{sys.argv[2]} rounds x {sys.argv[3]} s, oha with {sys.argv[4]} keep-alive connections presenting the "
      f"bench-consumer's client certificate (its bearer token over plain HTTP; each row compared with nginx over the same transport), POST of the ~1 KB record; proxy on CPU 0, load generator and upstream on CPU 1. "
      f"CPU per request is the proxy process's user + system time over the run divided by its requests.")
print(f"raw numbers: {sys.argv[1]}")
PY
