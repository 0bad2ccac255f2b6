#!/usr/bin/env bash
# Soak (issue 7; not in CI): builds the release server and examples/soak.rs, starts
# `backprop serve` on a free port, runs the mixed workload (create/train/forward/evaluate/
# delete) with many concurrent callers for a set time, samples the server's VmRSS from
# /proc every few seconds throughout (before, during and after the load), stops the
# server, and writes everything to bench/results/soak/<UTC>/:
#   soak.json, soak.txt   the client's report: per interval time, RSS, live sessions, calls
#                         and errors by code; per method calls, codes and latency
#   rss.tsv               the server's VmRSS every RSS_EVERY seconds, start to stop
#   run.json              settings, machine, commit, RSS start/peak/end, exit codes
#   server.log, soak.log  both sides' output
# Exits non-zero if the soak saw INTERNAL, UNKNOWN, UNAVAILABLE, a hang or a wrong answer,
# or the server did not stop cleanly.
#
# Usage: bench/soak/run.sh [extra soak args...]
#   CALLERS=200 DURATION=300s RSS_EVERY=2 SETTLE=10 SERVER_ARGS="--compute-threads 2"
#   IDLE_CONNECTIONS=50 SLOW_READERS=4 (clients that misbehave beside the callers: sockets
#   that send nothing, and connections that request model values and never read them)
#   PROFILE=release (or debug: the test profile, quicker to build)
#   RUST_LOG=warn (the server's log level; at info it logs every create, delete and
#   refusal, ~1 MB/s at this load)
set -euo pipefail
cd "$(dirname "$0")/../.."

CALLERS=${CALLERS:-200}
DURATION=${DURATION:-300s}
RSS_EVERY=${RSS_EVERY:-2}
SETTLE=${SETTLE:-10}
SERVER_ARGS=${SERVER_ARGS:-}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-50}
SLOW_READERS=${SLOW_READERS:-4}
PROFILE=${PROFILE:-release}

# Wherever cargo builds (CARGO_TARGET_DIR, .cargo/config.toml or ./target).
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${target_dir:-target}/$PROFILE
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/soak/$stamp
mkdir -p "$out"

echo "== building ($PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build --release --locked --bin backprop --example soak
else
    cargo build --locked --bin backprop --example soak
fi

echo "== starting the server"
addr_file=$out/address
# shellcheck disable=SC2086 # SERVER_ARGS is a list of flags
RUST_LOG=${RUST_LOG:-warn} "$bin/backprop" serve --listen 127.0.0.1:0 --address-file "$addr_file" \
    $SERVER_ARGS >"$out/server.log" 2>&1 &
server=$!
sampler=
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    kill "$server" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 300); do
    [ -s "$addr_file" ] && break
    kill -0 "$server" 2>/dev/null || { echo "the server exited; see $out/server.log"; exit 1; }
    sleep 0.1
done
[ -s "$addr_file" ] || { echo "no address after 30 s; see $out/server.log"; exit 1; }
addr=$(cat "$addr_file")
echo "server pid $server on $addr"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }
start_ns=$(date +%s%N)
(
    printf 't_s\trss_kib\n'
    while kill -0 "$server" 2>/dev/null; do
        kib=$(rss_kib "$server")
        [ -n "$kib" ] && printf '%.1f\t%s\n' "$(( ($(date +%s%N) - start_ns) / 1000000 ))e-3" "$kib"
        sleep "$RSS_EVERY"
    done
) >"$out/rss.tsv" &
sampler=$!

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
rss_start=$(rss_kib "$server")
echo "== soak: $CALLERS callers for $DURATION (load before: $load_before)"
set +e
"$bin/examples/soak" --address "$addr" --callers "$CALLERS" --duration "$DURATION" \
    --idle-connections "$IDLE_CONNECTIONS" --slow-readers "$SLOW_READERS" \
    --server-pid "$server" --out-dir "$out" "$@" 2>&1 | tee "$out/soak.log"
soak_status=${PIPESTATUS[0]}
set -e
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== idle for ${SETTLE}s, then stopping the server"
sleep "$SETTLE"
rss_end=$(rss_kib "$server")
# utime + stime (fields 14 and 15 of /proc/PID/stat, after the command's parentheses).
cpu_ticks=$(sed 's/.*) //' "/proc/$server/stat" | awk '{print $12 + $13}')
kill -TERM "$server"
server_status=0
wait "$server" || server_status=$?
sleep 0.2
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
rm -f "$addr_file"
rss_peak=$(awk -v end="${rss_end:-0}" 'NR > 1 && $2 > max {max = $2}
    END {print (end > max ? end : max) + 0}' "$out/rss.tsv")

log_warnings=$(grep -c 'WARN' "$out/server.log" || true)
log_errors=$(grep -c 'ERROR' "$out/server.log" || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -c . || true)
cat >"$out/run.json" <<EOF
{
  "started_utc": "$stamp",
  "commit": "$commit",
  "uncommitted_src_files": $dirty,
  "callers": $CALLERS,
  "duration": "$DURATION",
  "server_args": "$SERVER_ARGS",
  "idle_connections": $IDLE_CONNECTIONS,
  "slow_readers": $SLOW_READERS,
  "profile": "$PROFILE",
  "extra_soak_args": "$*",
  "cores": $(nproc),
  "loadavg_before": "$load_before",
  "loadavg_after": "$load_after",
  "server_cpu_s": $(awk "BEGIN {printf \"%.1f\", $cpu_ticks / $(getconf CLK_TCK)}"),
  "rss_mib": {
    "start": $(awk "BEGIN {printf \"%.1f\", ${rss_start:-0} / 1024}"),
    "peak": $(awk "BEGIN {printf \"%.1f\", ${rss_peak:-0} / 1024}"),
    "end_after_idle": $(awk "BEGIN {printf \"%.1f\", ${rss_end:-0} / 1024}")
  },
  "server_log_warnings": $log_warnings,
  "server_log_errors": $log_errors,
  "soak_exit": $soak_status,
  "server_exit": $server_status
}
EOF
echo "== results in $out"
cat "$out/run.json"
if [ "$soak_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
    echo "FAILED (soak exit $soak_status, server exit $server_status)"
    exit 1
fi
