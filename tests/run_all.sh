#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need, checks
# formatting and lints, then runs every test. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "rustfmt and clippy components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test (all Rust tests: engine, model, service end to end)"
cargo test --locked --all-targets

step "Python client on real data, ghz configs (tests/python_suite.sh)"
bash tests/python_suite.sh

step "Docker image: build, run, smoke-train through the published port (docker/test.sh)"
bash docker/test.sh

echo
echo "run_all.sh: every step passed"
