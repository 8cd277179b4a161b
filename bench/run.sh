#!/usr/bin/env bash
# xgate's benchmark: xgate side by side with nginx as a plain reverse proxy, in one run, on
# loopback. See bench/README.md.
#
#   bench/run.sh                  # 3 interleaved rounds: saturation, CPU per request, fixed-rate latency
#   bench/run.sh --rounds 5 --seconds 20
#   bench/run.sh --soak           # the full path at saturation for 5 minutes: resident memory over time
#   bench/run.sh --profile xgate-full   # where the gateway's time goes at saturation (perf, call graphs)
#   bench/run.sh --baseline OLD/xgate   # also measure another xgate build (before/after a change)
#   bench/run.sh --no-build             # use target/production/xgate as it is
#   bench/run.sh --only "xgate-full baseline-full"   # just these targets (and nginx, the yardstick)
#   bench/run.sh --synchronous full --baseline target/production/xgate --baseline-synchronous normal
#                                       # one build, two [audit] synchronous settings side by side
#   bench/run.sh --store postgres --only "xgate-full xgate-postgres-full" --rounds 2 --rate 8000
#                                       # also a gateway with its trail and registry in PostgreSQL
#                                       # (a fresh database): the server's CPU and the batches;
#                                       # --rate: the fixed rate (default half nginx's saturation)
#
# The proxy under test runs on CPU 0; the load generator and the upstream on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

rounds=3
seconds=10
soak=0
soak_seconds=300
profile=""
baseline=""
only=""
build=1
synchronous=""
baseline_synchronous=""
store=""
fixed_rate=""
connections=32
latency_connections=128
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --latency-connections) latency_connections=$2; shift 2 ;;
    --soak) soak=1; shift ;;
    --soak-seconds) soak_seconds=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --synchronous) synchronous=$2; shift 2 ;;
    --baseline-synchronous) baseline_synchronous=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --rate) fixed_rate=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

# --- tools, build, work folder (bench/lib.sh) --------------------------------------------------
case "$store" in
  "" | postgres) ;;
  *) echo "--store takes postgres (the SQLite trail is the default)" >&2; exit 2 ;;
esac
. "$root/bench/lib.sh"
if [ -n "$profile" ]; then bench_tools perf; elif [ -n "$store" ]; then bench_tools psql; else bench_tools; fi
bench_build "$build"

# --- the servers ------------------------------------------------------------------------------
bench_workdir xgate-bench
bench_upstream_conf "$work/upstream.conf" 18081
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
    server 127.0.0.1:18081;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:18082 reuseport backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF

taskset -c 1 "$nginx_bin" -c "$work/upstream.conf" -p "$work" &
pids+=($!)
taskset -c 0 "$nginx_bin" -c "$work/proxy.conf" -p "$work" &
pids+=($!)
# One runtime thread on the one CPU the gateway may use, as nginx runs one worker there.
XGATE_WORKERS=1 RUST_LOG=info taskset -c 0 "$xgate" serve --config "$(bench_gateway_config xgate "$synchronous")" \
  >"$work/logs/xgate.log" 2>&1 &
xgate_pid=$!
pids+=($xgate_pid)

if [ -n "$baseline" ]; then
  XGATE_WORKERS=1 RUST_LOG=info XGATE_LISTEN=127.0.0.1:18070 XGATE_ADMIN_LISTEN=127.0.0.1:18071 \
    taskset -c 0 "$baseline" serve --config "$(bench_gateway_config baseline "$baseline_synchronous")" >"$work/logs/baseline.log" 2>&1 &
  baseline_pid=$!
  pids+=($baseline_pid)
fi

# With --store postgres: a second gateway on the same build and configuration, its registry
# (imported from bench/schemas) and trail in a fresh database; the server's processes are the
# ones the postmaster runs (not pinned: the server is not this script's).
if [ -n "$store" ]; then
  bench_store_database
  postgres_config=$(bench_gateway_config xgate-postgres)
  XGATE_STORE_URL=$store_url "$xgate" store import --config "$postgres_config" >"$work/logs/store-import.log" 2>&1 ||
    { cat "$work/logs/store-import.log" >&2; exit 1; }
  postmaster=$(python3 "$root/bench/store.py" postmaster "$store_admin_url")
  [ -n "$postmaster" ] || echo "the PostgreSQL server's processes are not readable here: no server CPU" >&2
  XGATE_STORE_URL=$store_url XGATE_WORKERS=1 RUST_LOG=info XGATE_LISTEN=127.0.0.1:18075 XGATE_ADMIN_LISTEN=127.0.0.1:18076 \
    taskset -c 0 "$xgate" serve --config "$postgres_config" >"$work/logs/xgate-postgres.log" 2>&1 &
  postgres_pid=$!
  pids+=($postgres_pid)
fi

wait_for() {
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not come up" >&2
  exit 1
}
wait_for http://127.0.0.1:18081/licenses
wait_for http://127.0.0.1:18082/licenses
wait_for http://127.0.0.1:18090/readyz
[ -n "$baseline" ] && wait_for http://127.0.0.1:18071/readyz
[ -n "$store" ] && wait_for http://127.0.0.1:18076/readyz

# The nginx worker processes (children of the masters) do the work.
worker_of() { pgrep -P "$(cat "$1")" | head -n 1; }
proxy_worker=$(worker_of "$work/proxy.pid")

cat >"$work/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-consumer"
local file = io.open("$root/bench/data/request.json", "rb")
wrk.body = file:read("*a")
file:close()
EOF

declare -A url
url[direct]="http://127.0.0.1:18081/licenses"
url[nginx]="http://127.0.0.1:18082/licenses"
url[xgate-passthrough]="http://127.0.0.1:18080/exchange/bench-provider/passthrough"
url[xgate-full]="http://127.0.0.1:18080/exchange/bench-provider/full"
declare -A pid_of
pid_of[direct]=""
pid_of[nginx]=$proxy_worker
pid_of[xgate-passthrough]=$xgate_pid
pid_of[xgate-full]=$xgate_pid
targets=(direct nginx xgate-passthrough xgate-full)
if [ -n "$baseline" ]; then
  url[baseline-passthrough]="http://127.0.0.1:18070/exchange/bench-provider/passthrough"
  url[baseline-full]="http://127.0.0.1:18070/exchange/bench-provider/full"
  pid_of[baseline-passthrough]=$baseline_pid
  pid_of[baseline-full]=$baseline_pid
  targets+=(baseline-passthrough baseline-full)
fi
declare -A admin_of
admin_of[xgate-passthrough]=http://127.0.0.1:18090
admin_of[xgate-full]=http://127.0.0.1:18090
admin_of[baseline-passthrough]=http://127.0.0.1:18071
admin_of[baseline-full]=http://127.0.0.1:18071
if [ -n "$store" ]; then
  url[xgate-postgres-passthrough]="http://127.0.0.1:18075/exchange/bench-provider/passthrough"
  url[xgate-postgres-full]="http://127.0.0.1:18075/exchange/bench-provider/full"
  pid_of[xgate-postgres-passthrough]=$postgres_pid
  pid_of[xgate-postgres-full]=$postgres_pid
  admin_of[xgate-postgres-passthrough]=http://127.0.0.1:18076
  admin_of[xgate-postgres-full]=http://127.0.0.1:18076
  targets+=(xgate-postgres-passthrough xgate-postgres-full)
fi
if [ -n "$only" ]; then
  chosen=(nginx)
  for target in "${targets[@]}"; do
    [[ " $only " == *" $target "* && "$target" != nginx ]] && chosen+=("$target")
  done
  targets=("${chosen[@]}")
fi

# Sanity: every target answers 200 to the benchmark request.
for target in "${targets[@]}"; do
  status=$(curl -s -o "$work/check.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -H 'Authorization: Bearer bench-consumer' --data-binary @"$root/bench/data/request.json" "${url[$target]}")
  if [ "$status" != 200 ]; then
    echo "$target answered $status:" >&2
    cat "$work/check.json" >&2
    exit 1
  fi
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# With --store: around each measured window, the gateway's batch histogram, and for a gateway on
# the store the database's audit_blocks and the server processes' CPU (bench/store.py), read
# outside the window on both sides. `window_json REQUESTS` prints the differences as JSON.
window_before() {
  [ -n "$store" ] || return 0
  window_options=()
  [ -n "${admin_of[$1]:-}" ] && window_options+=(--metrics "${admin_of[$1]}/metrics")
  if [[ "$1" == xgate-postgres-* ]]; then
    window_options+=(--database "$store_url")
    [ -n "$postmaster" ] && window_options+=(--postmaster "$postmaster")
  fi
  python3 "$root/bench/store.py" snapshot "${window_options[@]}" >"$work/window-before.json"
}
window_after() {
  [ -n "$store" ] || return 0
  python3 "$root/bench/store.py" snapshot "${window_options[@]}" --after >"$work/window-after.json"
}
window_json() {
  python3 "$root/bench/store.py" window "$work/window-before.json" "$work/window-after.json" "$1"
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw="$root/bench/results/$stamp.jsonl"

if [ -n "$profile" ]; then
  pid=${pid_of[$profile]:-}
  [ -n "$pid" ] || { echo "no proxy process for $profile" >&2; exit 2; }
  echo "== profiling $profile at saturation for ${seconds}s"
  taskset -c 1 wrk -t1 -c"$connections" -d3s -s "$work/post.lua" "${url[$profile]}" >/dev/null
  (taskset -c 1 wrk -t1 -c"$connections" -d"$((seconds + 2))s" -s "$work/post.lua" "${url[$profile]}" >"$work/wrk.txt") &
  load=$!
  sleep 1
  perf record -F 1999 -g --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null
  wait "$load"
  report="$root/bench/results/$stamp-profile-$profile.txt"
  perf report -i "$work/perf.data" --no-children --percent-limit 0.3 --stdio --sort symbol \
    -g none 2>/dev/null >"$report"
  perf report -i "$work/perf.data" --children --percent-limit 2 --stdio --sort symbol \
    -g none 2>/dev/null >"$report.inclusive"
  perf report -i "$work/perf.data" --no-children --stdio --sort dso -g none 2>/dev/null >"$report.dso"
  requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
  echo "requests during the profile: $requests (over $((seconds + 2)) s of load)"
  echo "-- time by binary (kernel, xgate, libc, ...)"
  grep -E '^ +[0-9]' "$report.dso" | sed 's/  */ /g' | head -8
  echo "-- hottest symbols (self time)"
  grep -E '^ +[0-9]' "$report" | sed -E 's/ +/ /g; s/ - - *$//' | head -40
  echo "-- system calls per request (perf stat on the syscall tracepoints, ${seconds}s at saturation)"
  (taskset -c 1 wrk -t1 -c"$connections" -d"$((seconds + 2))s" -s "$work/post.lua" "${url[$profile]}" >"$work/wrk.txt") &
  load=$!
  sleep 1
  before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  perf stat -e 'syscalls:sys_enter_*' -p "$pid" -x, -o "$work/syscalls.csv" -- sleep "$seconds" 2>/dev/null
  wait "$load"
  rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")
  python3 - "$work/syscalls.csv" "$rps" "$seconds" <<'PY' | tee "$report.syscalls"
import sys
requests = float(sys.argv[2]) * float(sys.argv[3])
rows = []
for line in open(sys.argv[1]):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].isdigit() and int(fields[0]) > 0:
        rows.append((int(fields[0]), fields[2].replace("syscalls:sys_enter_", "")))
rows.sort(reverse=True)
print(f"  {sum(c for c, _ in rows) / requests:.2f} system calls per request:", ", ".join(f"{name} {count / requests:.2f}" for count, name in rows if count / requests >= 0.01))
PY
  echo "self time: $report; inclusive time: $report.inclusive; by binary: $report.dso"
  exit 0
fi

if [ "$soak" = 1 ]; then
  echo "== soak: xgate-full at saturation for ${soak_seconds}s"
  taskset -c 1 wrk -t1 -c"$connections" -d30s -s "$work/post.lua" "${url[xgate-full]}" >/dev/null
  start_rss=$(rss_kib "$xgate_pid")
  echo "resident after 30 s warm-up: ${start_rss} KiB"
  (
    taskset -c 1 wrk -t1 -c"$connections" -d"${soak_seconds}s" -s "$work/post.lua" "${url[xgate-full]}" \
      >"$work/soak-wrk.txt"
  ) &
  load=$!
  elapsed=0
  while kill -0 "$load" 2>/dev/null; do
    sleep 30
    elapsed=$((elapsed + 30))
    rss=$(rss_kib "$xgate_pid" || echo 0)
    echo "  ${elapsed}s: ${rss} KiB"
    echo "{\"soak_seconds\": $elapsed, \"rss_kib\": $rss}" >>"$raw"
  done
  wait "$load" || true
  end_rss=$(rss_kib "$xgate_pid")
  rps=$(awk '/Requests\/sec/ { print $2 }' "$work/soak-wrk.txt")
  echo "requests/s over the soak: $rps"
  echo "resident at start ${start_rss} KiB, at end ${end_rss} KiB"
  echo "{\"soak_start_rss_kib\": $start_rss, \"soak_end_rss_kib\": $end_rss, \"rps\": $rps}" >>"$raw"
  echo "raw numbers: $raw"
  exit 0
fi

echo "== warm-up"
for target in "${targets[@]}"; do
  taskset -c 1 wrk -t1 -c"$connections" -d3s -s "$work/post.lua" "${url[$target]}" >/dev/null
done

echo "== saturation: $rounds rounds x ${seconds}s per target, interleaved"
for round in $(seq 1 "$rounds"); do
  for target in "${targets[@]}"; do
    pid=${pid_of[$target]}
    window_before "$target"
    before=0
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s "$work/post.lua" "${url[$target]}" >"$work/wrk.txt"
    after=0
    [ -n "$pid" ] && after=$(cpu_ticks "$pid")
    window_after
    requests=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
    rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")
    errors=$(awk '/Non-2xx|Socket errors/ { print }' "$work/wrk.txt" | tr '\n' ' ')
    window=""
    [ -n "$store" ] && window=", \"window\": $(window_json "$requests")"
    echo "{\"round\": $round, \"kind\": \"saturation\", \"target\": \"$target\", \"requests\": $requests, \"rps\": $rps, \"cpu_ticks\": $((after - before)), \"clk_tck\": $(getconf CLK_TCK), \"errors\": \"$errors\"$window}" >>"$raw"
    printf '  round %s %-18s %10s req/s %s\n' "$round" "$target" "$rps" "$errors"
  done
done

nginx_rps=$(python3 - "$raw" <<'EOF'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
print(int(statistics.mean(r["rps"] for r in rows if r["kind"] == "saturation" and r["target"] == "nginx")))
EOF
)
rate=$((nginx_rps / 2))
if [ -n "$fixed_rate" ]; then
  rate=$fixed_rate
  echo "== latency at a fixed rate of $rate req/s (--rate), $rounds rounds x ${seconds}s"
else
  echo "== latency at a fixed rate of $rate req/s (half of nginx's saturation), $rounds rounds x ${seconds}s"
fi
for round in $(seq 1 "$rounds"); do
  for target in "${targets[@]}"; do
    pid=${pid_of[$target]}
    window_before "$target"
    before=0
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    taskset -c 1 oha --no-tui --latency-correction --output-format json -z "${seconds}s" -q "$rate" -c "$latency_connections" \
      -m POST -H 'Content-Type: application/json' -H 'Authorization: Bearer bench-consumer' \
      -D "$root/bench/data/request.json" "${url[$target]}" >"$work/oha.json" 2>/dev/null
    after=0
    [ -n "$pid" ] && after=$(cpu_ticks "$pid")
    window_after
    window=null
    if [ -n "$store" ]; then
      window=$(window_json "$(python3 -c 'import json, sys; print(sum(json.load(open(sys.argv[1])).get("statusCodeDistribution", {}).values()))' "$work/oha.json")")
    fi
    python3 - "$work/oha.json" "$target" "$round" "$rate" "$((after - before))" "$(getconf CLK_TCK)" "$window" >>"$raw" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
p = data["latencyPercentiles"]
codes = data.get("statusCodeDistribution", {})
row = {"round": int(sys.argv[3]), "kind": "latency", "target": sys.argv[2], "rate": int(sys.argv[4]),
       "p50_ms": p["p50"] * 1000, "p99_ms": p["p99"] * 1000,
       "rps": data["summary"]["requestsPerSec"], "requests": sum(codes.values()),
       "cpu_ticks": int(sys.argv[5]), "clk_tck": int(sys.argv[6]), "status": codes}
window = json.loads(sys.argv[7])
if window is not None:
    row["window"] = window
print(json.dumps(row))
EOF
    printf '  round %s %-18s done\n' "$round" "$target"
  done
done

rate_label="half nginx's saturation"
[ -n "$fixed_rate" ] && rate_label="$fixed_rate req/s (--rate)"
python3 - "$raw" "$connections" "$seconds" "$rounds" "$latency_connections" "$rate_label" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
targets = ["direct", "nginx", "xgate-passthrough", "xgate-full"]
targets += [t for t in ("baseline-passthrough", "baseline-full", "xgate-postgres-passthrough", "xgate-postgres-full")
            if any(r["target"] == t for r in rows)]
def mean(values):
    values = list(values)
    return statistics.mean(values) if values else float("nan")
summary = {}
for t in targets:
    sat = [r for r in rows if r["kind"] == "saturation" and r["target"] == t]
    lat = [r for r in rows if r["kind"] == "latency" and r["target"] == t]
    cpu = [r["cpu_ticks"] / r["clk_tck"] / r["requests"] * 1e6 for r in sat if r["requests"]]
    summary[t] = {
        "rps": mean(r["rps"] for r in sat),
        "rps_min": min((r["rps"] for r in sat), default=float("nan")),
        "rps_max": max((r["rps"] for r in sat), default=float("nan")),
        "cpu_us": mean(cpu) if t != "direct" else None,
        "p50": mean(r["p50_ms"] for r in lat),
        "p99": mean(r["p99_ms"] for r in lat),
        "fixed_rps": mean(r["rps"] for r in lat),
        "fixed_cpu_us": mean(r["cpu_ticks"] / r["clk_tck"] / r["requests"] * 1e6 for r in lat if r.get("requests")) if t != "direct" else None,
    }
n = summary["nginx"]
d = summary["direct"]
print()
print(f"{'target':<20} {'req/s':>8} {'(min-max)':>15} {'vs nginx':>8} {'CPU µs/req':>10} {'vs nginx':>8} | {'fixed rate':>10} {'CPU µs/req':>10} {'vs nginx':>8} {'p50 ms':>7} {'p99 ms':>7} {'added p99':>9}")
def ratio(value, reference):
    return f"{value / reference:.2f}x" if value is not None and reference else "-"
for t in targets:
    s = summary[t]
    cpu = f"{s['cpu_us']:.1f}" if s["cpu_us"] is not None else "-"
    fixed_cpu = f"{s['fixed_cpu_us']:.1f}" if s["fixed_cpu_us"] is not None else "-"
    added = s["p99"] - d["p99"]
    print(f"{t:<20} {s['rps']:>8.0f} {s['rps_min']:>7.0f}-{s['rps_max']:<7.0f} {s['rps'] / n['rps']:>7.2f}x {cpu:>10} {ratio(s['cpu_us'], n['cpu_us']):>8} | "
          f"{s['fixed_rps']:>10.0f} {fixed_cpu:>10} {ratio(s['fixed_cpu_us'], n['fixed_cpu_us']):>8} {s['p50']:>7.3f} {s['p99']:>7.3f} {added:>9.3f}")
print()
print(f"{sys.argv[4]} rounds x {sys.argv[3]} s, {sys.argv[2]} keep-alive connections, POST of the ~1 KB record; "
      f"proxy on CPU 0, load generator and upstream on CPU 1. Left: wrk at saturation. Right: oha at a fixed rate of "
      f"{sys.argv[6]} ({sys.argv[5]} connections), the rate achieved, CPU per request at that rate, latency with correction "
      f"for coordinated omission; 'added p99' is the target's p99 minus direct's. A target whose saturation is below the "
      f"fixed rate queues, and its latency then measures the queue.")
print(f"raw numbers: {sys.argv[1]}")
EOF

[ -n "$store" ] || exit 0
python3 - "$raw" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
targets = [t for t in ("xgate-passthrough", "xgate-full", "baseline-passthrough", "baseline-full",
                       "xgate-postgres-passthrough", "xgate-postgres-full") if any(r["target"] == t for r in rows)]
def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None
def show(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"
def batch_mean(windows):
    batches = sum(w.get("batches") or 0 for w in windows)
    entries = sum(w.get("batch_entries") or 0 for w in windows)
    return entries / batches if batches else None
print()
print("The trail's store, per target (--store): the gateway's CPU per request, the PostgreSQL server's "
      "(every process of it), the audit writer's batches")
print(f"{'target':<28} {'req/s':>8} {'gw µs/req':>9} {'DB µs/req':>9} {'mean batch':>10} | "
      f"{'fixed rate':>10} {'gw µs/req':>9} {'DB µs/req':>9} {'mean batch':>10} {'p50 ms':>7} {'p99 ms':>7}")
for t in targets:
    sat = [r for r in rows if r["kind"] == "saturation" and r["target"] == t]
    lat = [r for r in rows if r["kind"] == "latency" and r["target"] == t]
    sat_windows = [r.get("window") or {} for r in sat]
    lat_windows = [r.get("window") or {} for r in lat]
    print(f"{t:<28} {show(mean(r['rps'] for r in sat), 0):>8} "
          f"{show(mean(r['cpu_ticks'] / r['clk_tck'] / r['requests'] * 1e6 for r in sat if r['requests'])):>9} "
          f"{show(mean(w.get('db_us_per_request') for w in sat_windows)):>9} {show(batch_mean(sat_windows)):>10} | "
          f"{show(mean(r['rps'] for r in lat), 0):>10} "
          f"{show(mean(r['cpu_ticks'] / r['clk_tck'] / r['requests'] * 1e6 for r in lat if r.get('requests'))):>9} "
          f"{show(mean(w.get('db_us_per_request') for w in lat_windows)):>9} {show(batch_mean(lat_windows)):>10} "
          f"{show(mean(r['p50_ms'] for r in lat), 3):>7} {show(mean(r['p99_ms'] for r in lat), 3):>7}")
print()
print("Batches (xgate_audit_batch_entries over the windows, all rounds; entries per batch, share of batches):")
for kind in ("saturation", "latency"):
    for t in targets:
        windows = [r["window"] for r in rows if r["kind"] == kind and r["target"] == t and r.get("window")]
        buckets = {}
        for w in windows:
            for bound, value in (w.get("batch_buckets") or {}).items():
                buckets[bound] = buckets.get(bound, 0) + value
        total = sum(w.get("batches") or 0 for w in windows)
        if not total:
            continue
        bounds = sorted(buckets, key=lambda b: float(b))
        shares, below, low = [], 0, 0
        for bound in bounds:
            count = buckets[bound] - below
            below = buckets[bound]
            label = f"{low + 1:g}-{bound}" if bound != "+Inf" else f">{low:g}"
            if count:
                shares.append(f"{label}: {count / total:.0%}")
            low = float(bound) if bound != "+Inf" else low
        print(f"  {kind:<10} {t:<28} {int(total):>8} batches, {', '.join(shares)}")
print()
print("Cross-check with the database (audit_blocks rows and their entries over the windows, against the histogram "
      "and the requests):")
for t in targets:
    for kind in ("saturation", "latency"):
        windows = [(r["requests"], r["window"]) for r in rows if r["kind"] == kind and r["target"] == t
                   and r.get("window") and "db_blocks" in r["window"]]
        if not windows:
            continue
        print(f"  {kind:<10} {t:<28} blocks {sum(w['db_blocks'] for _, w in windows)} "
              f"(histogram {sum(w.get('batches') or 0 for _, w in windows)}), entries "
              f"{sum(w['db_block_entries'] for _, w in windows)} (histogram "
              f"{sum(w.get('batch_entries') or 0 for _, w in windows):.0f}, requests {sum(n for n, _ in windows)}); "
              f"server processes per window: " + ", ".join(
                  f"{w['db_processes']['before']}->{w['db_processes']['after']} (+{w['db_processes']['appeared']} "
                  f"-{w['db_processes']['exited']})" for _, w in windows if "db_processes" in w))
EOF
