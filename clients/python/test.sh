#!/usr/bin/env bash
# Run the backprop-client suite against the real server: creates the venv
# clients/python/.venv once (again when pyproject.toml changes), installs the package
# from this checkout with its [sklearn] and [test] extras (a regular install, not an
# editable one, so the tests see what `pip install ./clients/python` gives a user:
# the committed stubs, their .pyi files, py.typed), then runs pytest.
#
# The server binary is $BACKPROP_BIN (tests/conftest.py falls back to
# target/release/backprop, then target/debug/backprop). Extra arguments go to
# pytest (e.g. `-k sklearn`). Exits non-zero on any failure, and on "no tests
# collected" (pytest's 5).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
stamp="$VENV/.pyproject.sha256"
want="$(sha256sum "$HERE/pyproject.toml" | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    # From scratch, so a dependency dropped from pyproject.toml does not linger.
    python3 -m venv --clear "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$HERE[sklearn,test]"
    echo "$want" > "$stamp"
else
    # Dependencies are there: reinstall only the package, from this checkout.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        --force-reinstall "$HERE"
fi

cd "$HERE"
# Import from the installed package, never from src/ (pytest puts only tests/ on sys.path).
status=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test.sh: no tests collected" >&2
fi
exit $status
