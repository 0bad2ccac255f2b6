#!/usr/bin/env bash
# What a proxy in front of the replicas costs (docs/DEPLOY.md), in one run on this
# machine: three release replicas (--replica-id backprop-0..2) behind the reference
# nginx and HAProxy configurations of deploy/ (only the addresses rewritten), all on
# 127.0.0.1, and `backprop bench` against replica 0 directly and through each proxy:
#   - W1 TrainStep, one caller: p50 and p99 direct and through the proxy (the proxy's
#     added latency; the target is at most +10% at p50);
#   - W2 Forward, 50 callers: direct to one replica (one session) against the proxy in
#     front of three (three sessions, one per replica), calls/s and p99.
# The three targets are measured in turn, round after round (--rounds, default 5), so
# that a drift of the shared machine's speed hits all three alike; the table gives each
# target's median over the rounds and the median of the per-round ratios to direct.
# Prints the table and writes every bench report (JSON) to
# bench/results/proxy/<UTC time>/.
#
#   bash bench/proxy.sh                 # 5 rounds of 2 s per target and workload
#   bash bench/proxy.sh --duration 4 --rounds 9
#   bash bench/proxy.sh --only w1       # one of the two (w1 or w2)
# Needs nginx and haproxy (Debian: nginx-light, haproxy) and builds the release binary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration=2 rounds=5 only=""
while (($#)); do
    case "$1" in
        --duration) duration="${2:?--duration needs seconds}"; shift 2 ;;
        --only) only="${2:?--only needs w1 or w2}"; shift 2 ;;
        --rounds) rounds="${2:?--rounds needs a number}"; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "proxy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in nginx haproxy; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
        echo "proxy.sh: $tool is not installed (Debian: apt-get install nginx-light haproxy)" >&2
        exit 1
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

cd "$REPO"
cargo build --release --locked --bin backprop
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/backprop"
out="$REPO/bench/results/proxy/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "proxy.sh: nothing listens on port $1 (see $work)" >&2
    exit 1
}

# The replicas, each on its own port.
addrs=()
for i in 0 1 2; do
    port=$(free_port)
    "$BIN" serve --listen "127.0.0.1:$port" --replica-id "backprop-$i" \
        >"$work/backprop-$i.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
    addrs+=("127.0.0.1:$port")
done
readdress() {
    sed -e "s/10\.0\.0\.10:50051/${addrs[0]}/g" -e "s/10\.0\.0\.11:50051/${addrs[1]}/g" \
        -e "s/10\.0\.0\.12:50051/${addrs[2]}/g" "$1"
}

# nginx: the shipped routing files, in one process.
mkdir -p "$work/nginx/tmp"
cp deploy/nginx/backprop-routing.conf deploy/nginx/backprop-server.conf \
    deploy/nginx/backprop-replicas.map "$work/nginx/"
readdress deploy/nginx/backprop-upstreams.conf >"$work/nginx/backprop-upstreams.conf"
nginx_port=$(free_port)
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  proxy_temp_path $work/nginx/tmp/proxy;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  include backprop-routing.conf;
  server {
    listen 127.0.0.1:$nginx_port http2;
    include backprop-server.conf;
  }
}
EOF
"$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" 2>"$work/nginx/stderr.log" &
pids+=($!)
wait_port "$nginx_port"

# HAProxy: the shipped configuration.
haproxy_port=$(free_port)
readdress deploy/haproxy/haproxy.cfg \
    | sed -e "s|bind :8080 proto h2|bind 127.0.0.1:$haproxy_port proto h2|" \
          -e "s|/etc/haproxy/errors/backprop-unavailable.http|$REPO/deploy/haproxy/backprop-unavailable.http|" \
    >"$work/haproxy.cfg"
"$HAPROXY" -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" &
pids+=($!)
wait_port "$haproxy_port"

bench() { # name address workload [flags...]
    local name=$1 address=$2 workload=$3
    shift 3
    # A run with failed calls exits 1 after its report: keep going, the table shows it.
    "$BIN" bench --workload "$workload" --address "$address" --duration "$duration" \
        --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 || true
}
for round in $(seq "$rounds"); do
    for target in direct:"${addrs[0]}" nginx:"127.0.0.1:$nginx_port" haproxy:"127.0.0.1:$haproxy_port"; do
        name=${target%%:*} address=${target#*:}
        [[ $only == w2 ]] || bench "w1-$name-$round" "$address" w1 --warmup 0.5
        sessions=3
        [[ $name == direct ]] && sessions=1
        [[ $only == w1 ]] || bench "w2-$name-$round" "$address" w2-forward --sessions "$sessions" --warmup 0.5
    done
done

python3 - "$out" <<'EOF'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
runs = {}
for p in sorted(out.glob("w*.json")):
    workload, via, _round = p.stem.split("-")
    runs.setdefault((workload, via), []).append(json.loads(p.read_text()))

def med(workload, via, f):
    return statistics.median(f(r) for r in runs[(workload, via)])

def ratio(workload, via, f):
    pairs = zip(runs[(workload, via)], runs[(workload, "direct")])
    return statistics.median(f(a) / f(b) for a, b in pairs)

p50 = lambda r: r["result"]["latency_ms"]["p50"]
p99 = lambda r: r["result"]["latency_ms"]["p99"]
rps = lambda r: r["result"]["rps"]
errors = lambda w, via: sum(sum(r["result"]["errors"].values()) for r in runs[(w, via)])
rounds = len(runs.get(("w1", "direct"), runs.get(("w2", "direct"), [])))
print(f"run: {out} ({rounds} rounds; medians over the rounds)")
summary = {}
if ("w1", "direct") in runs:
    print("W1 TrainStep, 1 caller        p50 ms   p99 ms   p50 vs direct  errors")
    for via in ("direct", "nginx", "haproxy"):
        row = dict(p50_ms=med("w1", via, p50), p99_ms=med("w1", via, p99),
                   p50_ratio=ratio("w1", via, p50), errors=errors("w1", via))
        summary[f"w1-{via}"] = row
        print(f"  {via:<27} {row['p50_ms']:7.2f}  {row['p99_ms']:7.2f}   "
              f"{row['p50_ratio']:6.3f}x        {row['errors']}")
if ("w2", "direct") in runs:
    print("W2 Forward, 50 callers        calls/s   p99 ms   calls/s vs direct  errors")
    for via in ("direct", "nginx", "haproxy"):
        row = dict(rps=med("w2", via, rps), p99_ms=med("w2", via, p99),
                   rps_ratio=ratio("w2", via, rps), errors=errors("w2", via))
        summary[f"w2-{via}"] = row
        label = via + (" (1 replica)" if via == "direct" else " (3 replicas)")
        print(f"  {label:<27} {row['rps']:8.0f}  {row['p99_ms']:7.2f}   "
              f"{row['rps_ratio']:6.3f}x             {row['errors']}")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
EOF
