#!/usr/bin/env bash
# The deployment checks: validates deploy/k8s against the Kubernetes schemas, lints the
# manifests and deploy/compose/compose.yaml for security and for what the replicas need
# (tests/deploy/check_manifests.py says what exactly), and proves the lint reports
# broken copies. Exit 0 iff every check passed.
#
# Creates (or updates) its venv at tests/deploy/.venv first. Idempotent: a stamp file
# holds the hash of requirements.txt, so a second run installs nothing; a changed
# requirements.txt rebuilds the venv from scratch. Only that install uses the network
# (PyPI); the checks themselves run offline.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"

req_hash="$(sha256sum "$REQ" | cut -d' ' -f1)"
venv_stamp="$VENV/.requirements.sha256"
if [[ ! -x "$VENV/bin/python" || "$(cat "$venv_stamp" 2>/dev/null)" != "$req_hash" ]]; then
    # From scratch, so a package dropped from requirements.txt does not linger.
    python3 -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
    echo "$req_hash" > "$venv_stamp"
fi

exec "$VENV/bin/python" "$HERE/check_manifests.py" "$@"
