#!/usr/bin/env bash
# Create (or reuse) the benchmark venv at $REPO/.venv and install bench/requirements.txt
# (with --torch: $REPO/.venv-torch and bench/requirements-torch.txt).
#
# Why: the numpy reference (bench/numpy_w1.py) must run on the same pinned numpy on every
# machine, and machines are not kept, so the repo installs what it needs itself.
# Idempotent: a stamp file holding the hash of requirements.txt skips the pip step when
# nothing changed. Quiet on success; callers use "$REPO/.venv/bin/python".
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
REQ="$REPO/bench/requirements.txt"
# --torch: the PyTorch venv of bench/torch_w1.py instead, $REPO/.venv-torch from
# bench/requirements-torch.txt. Apart because the wheel is large (with its CUDA
# libraries, about 5 GB installed; only the CPU is used) and only that benchmark needs it.
if [[ "${1:-}" == "--torch" ]]; then
    VENV="$REPO/.venv-torch"
    REQ="$REPO/bench/requirements-torch.txt"
fi
STAMP="$VENV/.requirements.sha256"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
echo "$want" > "$STAMP"
