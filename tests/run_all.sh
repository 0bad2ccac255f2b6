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

step "Debian packages the tests run: Graphviz (dot), nginx and HAProxy (the proxy tests)"
# tests/service/trace.rs renders the traced graph with dot; tests/ops/replicas.rs puts the
# reference nginx and HAProxy configurations of deploy/ in front of three replicas.
# Installed from the apt sources this machine already has configured; none is added.
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
[[ -x /usr/sbin/haproxy ]] || command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
if ((${#missing[@]} > 0)); then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "run_all.sh: ${missing[*]} missing and there is no apt-get to install them" >&2
        exit 1
    fi
    eval "$(apt-config shell APT_ETC Dir::Etc/ APT_LIST Dir::Etc::sourcelist/f APT_PARTS Dir::Etc::sourceparts/d)"
    sources=$( { grep -hsE '^[[:space:]]*deb[[:space:]]' "${APT_LIST:-/etc/apt/sources.list}" \
                   "${APT_PARTS:-/etc/apt/sources.list.d/}"*.list || true
                 grep -hsiE '^[[:space:]]*Types:.*\bdeb\b' "${APT_PARTS:-/etc/apt/sources.list.d/}"*.sources \
                   || true; } | wc -l)
    if ((sources == 0)); then
        echo "run_all.sh: ${missing[*]} missing and apt has no package source configured" \
            "(${APT_LIST:-/etc/apt/sources.list}, ${APT_PARTS:-/etc/apt/sources.list.d/}):" \
            "configure one, or install them by hand" >&2
        exit 1
    fi
    as_root=()
    if ((EUID != 0)); then as_root=(sudo); fi
    # The packages must not start their own daemons (nginx on port 80): the tests start
    # them on 127.0.0.1 themselves. policy-rc.d says so to the package scripts, unless
    # the machine already has one.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
        "${as_root[@]}" chmod 755 "$policy"
        added_policy=1
    fi
    "${as_root[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
    if ((added_policy)); then "${as_root[@]}" rm -f "$policy"; fi
fi
dot -V
"$(command -v nginx || echo /usr/sbin/nginx)" -v
"$(command -v haproxy || echo /usr/sbin/haproxy)" -v | head -1

step "Deployment files: Kubernetes schemas, security lint, compose (tests/deploy/run.sh)"
bash tests/deploy/run.sh

step "cargo test (all Rust tests: engine, model, service end to end)"
cargo test --locked --all-targets

step "Python client on real data, ghz configs (tests/python_suite.sh)"
bash tests/python_suite.sh

step "Python package backprop-client (clients/python/test.sh)"
BACKPROP_BIN="${BACKPROP_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/backprop}" bash clients/python/test.sh

step "Docker image: build, run, smoke-train through the published port (docker/test.sh)"
bash docker/test.sh

echo
echo "run_all.sh: every step passed"
