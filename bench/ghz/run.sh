#!/usr/bin/env bash
# Load-test the server with ghz: workloads W1, W2, W5 and W6 of bench/README.md, through
# server reflection (no .proto needed). Writes ghz's JSON reports and a summary under
# bench/results/ghz/<UTC time>/.
#
#   bash bench/ghz/run.sh                          # all workloads, on a server it starts
#   bash bench/ghz/run.sh w2_forward w2_health     # some of them
#   bash bench/ghz/run.sh --host 10.0.0.5:50051    # against a server already running
#   bash bench/ghz/run.sh --dry-run                # everything but ghz itself
#
# Workloads are the file names in bench/ghz/configs/ (w1_trainstep, w2_forward, ...;
# see bench/ghz/README.md). ghz cannot chain calls, so for each one prepare.py first
# creates what it needs (the session, W5's dataset, steps for GetHistory, a finished fit
# for WatchFit), puts the ids into the data, and writes a runnable copy of the config
# beside the results; then this script runs
#   ghz --config <run folder>/<workload>.config.json
# Options:
#   --host HOST:PORT  use that server; without it the release server is built, started
#                     on 127.0.0.1 (a free port) and stopped (SIGTERM) at the end
#   --out DIR         run folder (default bench/results/ghz/<UTC time>)
#   --w5-rows N       rows of W5's dataset (default 10,000 rows of 3072 f32: 123 MB)
#   --dry-run         prepare sessions and configs and print the ghz commands; ghz is
#                     not needed
# The ghz binary is $GHZ if set, else `ghz` on PATH.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GHZ="${GHZ:-ghz}"
host="" out="" w5_rows="" dry_run=0 workloads=()

# The comment block above, whatever its length.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }
while (($#)); do
    case "$1" in
        --host) host="${2:?--host needs HOST:PORT}"; shift 2 ;;
        --out) out="${2:?--out needs a folder}"; shift 2 ;;
        --w5-rows) w5_rows="${2:?--w5-rows needs a number}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) workloads+=("$1"); shift ;;
    esac
done

if ((!dry_run)) && ! command -v "$GHZ" >/dev/null 2>&1; then
    cat >&2 <<EOF
run.sh: ghz is not installed (looked for '$GHZ' on PATH).
  Install it from https://ghz.sh/docs/install (a release binary, or
  'go install github.com/bojand/ghz/cmd/ghz@latest'), or point GHZ at the binary.
  'bash bench/ghz/run.sh --dry-run' prepares sessions and configs without it.
EOF
    exit 127
fi

cd "$REPO"
out="${out:-$REPO/bench/results/ghz/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
bash examples/python/setup.sh
PY="$REPO/examples/python/.venv/bin/python"

server_pid=""
stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap stop_server EXIT

if [[ -z "$host" ]]; then
    cargo build --quiet --release --bin backprop
    bin="${CARGO_TARGET_DIR:-$REPO/target}/release/backprop"
    rm -f "$out/server.address"
    "$bin" serve --listen 127.0.0.1:0 --address-file "$out/server.address" \
        > "$out/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 300); do
        [[ -s "$out/server.address" ]] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
        sleep 0.1
    done
    [[ -s "$out/server.address" ]] || { echo "run.sh: server did not start" >&2; exit 1; }
    host="$(cat "$out/server.address")"
    echo "server: $bin on $host (log: $out/server.log)" >&2
fi

mapfile -t configs < <("$PY" bench/ghz/prepare.py prepare --host "$host" --out "$out" \
    ${w5_rows:+--w5-rows "$w5_rows"} ${workloads[@]+"${workloads[@]}"})

for config in "${configs[@]}"; do
    echo "+ $GHZ --config $config"
    ((dry_run)) || "$GHZ" --config "$config"
done

if ((dry_run)); then
    echo "dry run: runnable configs in $out (ghz not run)"
else
    "$PY" bench/ghz/prepare.py summarize "$out"
    echo "results: $out"
fi
