#!/usr/bin/env bash
# The Python side of the test suite, from a fresh clone: builds the server (the test
# profile tests/run_all.sh has already built, so no second build of the whole tree; set
# BACKPROP_BIN to test another binary, e.g. a release build), creates the client's
# pinned venv and stubs (examples/python/setup.sh), then runs pytest on
# examples/python/tests against real servers on 127.0.0.1:
#   - the digits client, through Fit, reaches ≥ 0.97 held-out accuracy with SVM and softmax, and the
#     same run gives the same numbers;
#   - every payload in the ghz configs (bench/ghz/) is accepted, and bench/ghz/run.sh
#     prepares every workload;
#   - through nginx in front of three replicas, every call the client makes reaches the
#     replica of the model it names.
# Exits non-zero on any failure, including pytest finding no test (its exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${BACKPROP_BIN:-} ]]; then
    cargo build --locked --bin backprop
    export BACKPROP_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/backprop"
fi
bash examples/python/setup.sh

status=0
examples/python/.venv/bin/python -m pytest -q -p no:cacheprovider examples/python/tests \
    || status=$?
if ((status == 5)); then
    echo "python_suite.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
