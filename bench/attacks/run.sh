#!/usr/bin/env bash
# Attacks (issue 13; not in CI): builds the release server and examples/attacks.rs,
# starts `backprop serve --listen 127.0.0.1:0 --address-file …` with every other setting
# at its default, re-runs the red team's attacks against it (one after the other, each
# followed by a well-behaved probe), stops it with SIGTERM and checks it exits 0. Then the
# same under a container-like cap: the server started under `ulimit -v` (4 GiB), where
# its default memory budget (`--max-memory auto`) follows the limit (half of it).
#
# If an attack kills the server, the run records it (a failure) and starts a fresh server
# for the attacks not yet run, so every attack has a result; each such part has its own
# files (part 1 unsuffixed, then -2, -3, …).
#
# Everything goes to bench/results/attacks/<UTC>/<variant>/:
#   attacks.json, attacks.md  the tally: per attack what was sent, outcomes by code,
#                             probes during and after, server alive, RSS before/peak/after
#   attacks.log, server.log   both sides' output
#   run.json                  settings, machine load before/after, commit, the budget the
#                             server chose, exit codes
# Exits non-zero if any attack failed (see examples/attacks.rs) or a server did not stop
# cleanly.
#
# Usage: bench/attacks/run.sh [extra attacks args, e.g. --only idle-sockets,deep-trace]
#   VARIANTS="default capped" (or one of them)  ULIMIT_V_KIB=4194304 (the capped variant)
#   CAPPED_ARGS="--upload-declared-bytes 600000000 --upload-sent-bytes 268435456" (attacks
#   args for the capped variant only: 16 stalled uploads of 256 MiB are four times its
#   uploads' share, 1 GiB of its 2 GiB budget, and each declares a size the share could
#   hold, so the share is what refuses them; on the default server, with half of the
#   machine's memory as its budget, 16 × 128 MiB of 1.2 GB are sent)
#   PROFILE=release (or debug: the test profile, quicker to build)  RUST_LOG=info
set -euo pipefail
cd "$(dirname "$0")/../.."

VARIANTS=${VARIANTS:-default capped}
ULIMIT_V_KIB=${ULIMIT_V_KIB:-4194304}
PROFILE=${PROFILE:-release}
CAPPED_ARGS=${CAPPED_ARGS:---upload-declared-bytes 600000000 --upload-sent-bytes 268435456}

target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${target_dir:-target}/$PROFILE
stamp=$(date -u +%Y%m%dT%H%M%SZ)
root=bench/results/attacks/$stamp

echo "== building ($PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build --release --locked --bin backprop --example attacks
else
    cargo build --locked --bin backprop --example attacks
fi

server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null || true; }
trap cleanup EXIT

# One server and one run of the attacks: run_part VARIANT OUT SUFFIX [attacks args...].
# Sets part_failed=1 on any failure.
run_part() {
    local variant=$1 out=$2 suffix=$3
    shift 3
    local addr_file=$out/address$suffix log=$out/server$suffix.log limit
    local serve=("$bin/backprop" serve --listen 127.0.0.1:0 --address-file "$addr_file")
    rm -f "$addr_file"
    # `exec` keeps the pid: the one we watch is the server's own. BACKPROP_MAX_MEMORY from
    # the environment would change the default under test.
    if [ "$variant" = capped ]; then
        limit="ulimit -v $ULIMIT_V_KIB"
        env -u BACKPROP_MAX_MEMORY RUST_LOG="${RUST_LOG:-info}" \
            sh -c 'ulimit -v "$0" && exec "$@"' "$ULIMIT_V_KIB" "${serve[@]}" >"$log" 2>&1 &
    else
        limit="none"
        env -u BACKPROP_MAX_MEMORY RUST_LOG="${RUST_LOG:-info}" "${serve[@]}" >"$log" 2>&1 &
    fi
    server=$!
    echo "== $variant$suffix: starting the server (limit: $limit)"
    for _ in $(seq 1 300); do
        [ -s "$addr_file" ] && break
        kill -0 "$server" 2>/dev/null || { echo "the server exited; see $log"; exit 1; }
        sleep 0.1
    done
    [ -s "$addr_file" ] || { echo "no address after 30 s; see $log"; exit 1; }
    local addr budget uptime_before uptime_after attacks_status server_status=0
    addr=$(cat "$addr_file")
    budget=$(grep -m1 'memory budget' "$log" |
        sed -e 's/\x1b\[[0-9;]*m//g' -e 's/"/\\"/g' || true)
    echo "server pid $server on $addr; $budget"
    uptime_before=$(uptime)
    echo "load before: $uptime_before"
    set +e
    "$bin/examples/attacks" --address "$addr" --server-pid "$server" --server-log "$log" \
        --json "$out/attacks$suffix.json" --not-run "$out/not-run$suffix" "$@" 2>&1 |
        tee "$out/attacks$suffix.log"
    attacks_status=${PIPESTATUS[0]}
    set -e
    uptime_after=$(uptime)
    echo "load after: $uptime_after"
    # The Markdown table and the per-attack notes, as the example printed them last.
    sed -n '/^| attack |/,$p' "$out/attacks$suffix.log" >"$out/attacks$suffix.md"
    if kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server"
        wait "$server" || server_status=$?
    else
        wait "$server" || server_status=$?
        echo "the server had already exited (status $server_status)"
        [ "$server_status" -eq 0 ] && server_status=255
    fi
    server=
    rm -f "$addr_file"
    local commit dirty
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | grep -c . || true)
    cat >"$out/run$suffix.json" <<EOF
{
  "started_utc": "$stamp",
  "variant": "$variant",
  "part": "${suffix#-}",
  "limit": "$limit",
  "commit": "$commit",
  "uncommitted_src_files": $dirty,
  "profile": "$PROFILE",
  "attacks_args": "$*",
  "cores": $(nproc),
  "mem_total_kib": $(awk '/^MemTotal:/ {print $2}' /proc/meminfo),
  "uptime_before": "$uptime_before",
  "uptime_after": "$uptime_after",
  "budget_log_line": "$budget",
  "server_log_bytes": $(stat -c %s "$log"),
  "attacks_exit": $attacks_status,
  "server_exit": $server_status
}
EOF
    echo "== $variant$suffix: attacks exit $attacks_status, server exit $server_status"
    if [ "$attacks_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
        part_failed=1
    fi
}

failed=0
for variant in $VARIANTS; do
    out=$root/$variant
    mkdir -p "$out"
    variant_args=()
    case $variant in
    default) ;;
    # shellcheck disable=SC2206 # CAPPED_ARGS is a list of flags
    capped) variant_args=($CAPPED_ARGS) ;;
    *) echo "unknown variant $variant (default, capped)"; exit 2 ;;
    esac
    part_failed=0
    run_part "$variant" "$out" "" "${variant_args[@]}" "$@"
    part=1 suffix=
    while [ -s "$out/not-run$suffix" ] && [ "$part" -lt 10 ]; do
        rest=$(cat "$out/not-run$suffix")
        part=$((part + 1)) suffix=-$part
        echo "== $variant: the server died; a fresh one for the attacks not yet run: $rest"
        run_part "$variant" "$out" "$suffix" "${variant_args[@]}" "$@" --only "$rest"
    done
    echo "== $variant: results in $out"
    [ "$part_failed" -ne 0 ] && failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "FAILED (see the results above)"
    exit 1
fi
