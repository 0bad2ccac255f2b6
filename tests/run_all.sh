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

step "Graphviz (tests/service/trace.rs renders the traced graph with dot)"
# Installed from the apt sources this machine already has configured; none is added.
if ! command -v dot >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "run_all.sh: Graphviz's dot is missing and there is no apt-get to install it" >&2
        exit 1
    fi
    eval "$(apt-config shell APT_ETC Dir::Etc/ APT_LIST Dir::Etc::sourcelist/f APT_PARTS Dir::Etc::sourceparts/d)"
    sources=$( { grep -hsE '^[[:space:]]*deb[[:space:]]' "${APT_LIST:-/etc/apt/sources.list}" \
                   "${APT_PARTS:-/etc/apt/sources.list.d/}"*.list || true
                 grep -hsiE '^[[:space:]]*Types:.*\bdeb\b' "${APT_PARTS:-/etc/apt/sources.list.d/}"*.sources \
                   || true; } | wc -l)
    if ((sources == 0)); then
        echo "run_all.sh: Graphviz's dot is missing and apt has no package source configured" \
            "(${APT_LIST:-/etc/apt/sources.list}, ${APT_PARTS:-/etc/apt/sources.list.d/}):" \
            "configure one, or install graphviz by hand" >&2
        exit 1
    fi
    as_root=()
    if ((EUID != 0)); then as_root=(sudo); fi
    "${as_root[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y --no-install-recommends graphviz
fi
dot -V

step "cargo test (all Rust tests: engine, model, service end to end)"
cargo test --locked --all-targets

step "Python client on real data, ghz configs (tests/python_suite.sh)"
bash tests/python_suite.sh

step "Docker image: build, run, smoke-train through the published port (docker/test.sh)"
bash docker/test.sh

echo
echo "run_all.sh: every step passed"
