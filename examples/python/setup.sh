#!/usr/bin/env bash
# Create (or update) the Python client's venv at examples/python/.venv and generate the
# gRPC stubs from proto/ into examples/python/gen/.
#
# Why a venv of its own (not the bench one at $REPO/.venv): the client's pins (grpcio,
# protobuf, scikit-learn) move independently of the numpy reference's.
# Idempotent: stamp files hold the hash of requirements.txt (for the venv) and of the
# protos plus requirements (for the stubs), so a second run does nothing; a changed
# requirements.txt rebuilds the venv from scratch. Quiet on success; callers use
# examples/python/.venv/bin/python, and backprop_client.py puts gen/ on sys.path.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
GEN="$HERE/gen"
PROTO_DIR="$REPO/proto"

req_hash="$(sha256sum "$REQ" | cut -d' ' -f1)"
venv_stamp="$VENV/.requirements.sha256"
if [[ ! -x "$VENV/bin/python" || "$(cat "$venv_stamp" 2>/dev/null)" != "$req_hash" ]]; then
    # From scratch, so a package dropped from requirements.txt does not linger.
    python3 -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
    echo "$req_hash" > "$venv_stamp"
fi

# Stubs depend on the protos and on the grpcio-tools version (pinned in requirements).
mapfile -t protos < <(cd "$PROTO_DIR" && find . -name '*.proto' | LC_ALL=C sort)
gen_hash="$( { echo "$req_hash"; (cd "$PROTO_DIR" && sha256sum "${protos[@]}"); } \
    | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$GEN/.protos.sha256" 2>/dev/null)" != "$gen_hash" ]]; then
    # Generate beside, then swap, so a reader never sees half a package.
    tmp="$(mktemp -d "$HERE/.gen.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$PROTO_DIR" && "$VENV/bin/python" -m grpc_tools.protoc -I . \
        --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" "${protos[@]}")
    echo "$gen_hash" > "$tmp/.protos.sha256"
    rm -rf "$GEN"
    mv "$tmp" "$GEN"
    trap - EXIT
fi
