#!/usr/bin/env bash
# Regenerate the gRPC stubs of backprop_client from proto/ (the wire contract) into
# src/backprop_client/_proto/ (or into $1, which tests/test_stubs.py uses to check that
# the committed stubs are exactly what this script makes, so they cannot drift).
#
# Why committed at all: `pip install ./clients/python` then needs no protoc and no
# grpcio-tools, and the .pyi files give editors and type checkers the messages' fields.
# protoc writes backprop/v1/backprop_pb2*.py importing `backprop.v1`, a top-level package
# that would clash with anyone else's copy of the same stubs; the files are flattened
# into _proto/ and that import made relative, so they import only inside the package.
#
# $BACKPROP_PROTO_DIR replaces proto/ (e.g. an export of a commit's proto/ while the work
# tree holds an unfinished change to it).
# Python: $PYTHON, else clients/python/.venv/bin/python, else python3; it needs
# grpcio-tools at the version pinned in pyproject.toml's [test] extra (the generated
# code differs between versions).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTO_DIR="$(cd "${BACKPROP_PROTO_DIR:-$HERE/../../proto}" && pwd)"
OUT="${1:-$HERE/src/backprop_client/_proto}"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$HERE/.venv/bin/python" ]]; then PY="$HERE/.venv/bin/python"; else PY=python3; fi
fi

# The generated code differs between grpcio-tools versions: use the pinned one.
pin="$(sed -n 's/.*"grpcio-tools==\([0-9.]*\)".*/\1/p' "$HERE/pyproject.toml")"
have="$("$PY" -c 'from importlib.metadata import version; print(version("grpcio-tools"))' \
    2>/dev/null || echo none)"
if [[ "$have" != "$pin" ]]; then
    echo "regen.sh: $PY has grpcio-tools $have, pyproject.toml pins $pin:" \
        "run clients/python/test.sh once (it makes .venv), or set PYTHON" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$PROTO_DIR" && "$PY" -m grpc_tools.protoc -I . \
    --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" backprop/v1/backprop.proto)

mkdir -p "$OUT"
for f in backprop_pb2.py backprop_pb2.pyi backprop_pb2_grpc.py; do
    sed -e 's/^from backprop\.v1 import backprop_pb2 as /from . import backprop_pb2 as /' \
        "$tmp/backprop/v1/$f" > "$OUT/$f"
done
cat > "$OUT/__init__.py" <<'PY'
"""Stubs generated from proto/backprop/v1/backprop.proto by clients/python/regen.sh.

Do not edit: run regen.sh (tests/test_stubs.py fails when these differ from its output).
"""
PY
