#!/usr/bin/env bash
# docker/test.sh: build docker/Dockerfile and prove the image serves, on a machine with no
# Docker engine and no container registry (Debian's buildah/podman/runc, run as root).
#
#   bash docker/test.sh
#
# 1. Installs buildah, podman, runc, debootstrap (apt) if missing.
# 2. Makes the two base images locally if missing, tagged with the upstream names the
#    Dockerfile uses, so the unmodified Dockerfile builds with --pull=never:
#      docker.io/library/debian:bookworm-slim      debootstrap (minbase) from the Debian
#                                                  mirror apt uses, slimmed like the
#                                                  official image
#      docker.io/library/rust:<v>-slim-bookworm    that debian + gcc/libc6-dev + the
#                                                  host's rustup toolchain
# 3. Builds the image (buildah, chroot isolation, the host's CA folder mounted so cargo
#    can fetch crates through the TLS-intercepting proxy; cargo's registry in a cache
#    mount; layers cached between runs).
# 4. Runs it with runc and explicit ulimits on 127.0.0.1:<free port>, waits until the
#    image's HEALTHCHECK (`backprop health`) passes, trains a model through the published
#    port (CreateModel, TrainStep x N, Forward) with a small grpcio client, checks the
#    server runs as a non-root user, logs JSON and the image is under 100 MB, then
#    removes the container (also on failure).
#
# Idempotent: base images, the built layers, cargo's registry and the client's venv are
# cached between runs (/var/cache/backprop-docker-test and podman's store). Environment:
#   BACKPROP_IMAGE      tag to build (default localhost/backprop:test; the builder stage
#                       is kept as localhost/backprop-builder:test, for its cache)
#   BACKPROP_TEST_CACHE cache folder (default /var/cache/backprop-docker-test)
#   MAX_IMAGE_MB        size limit for the runtime image (default 100)
#   SMOKE_STEPS         TrainSteps in the smoke test (default 200)
set -euo pipefail

T_START=$(date +%s)
REPO=$(cd "$(dirname "$0")/.." && pwd)
DOCKERFILE="$REPO/docker/Dockerfile"
IMAGE=${BACKPROP_IMAGE:-localhost/backprop:test}
BUILDER_IMAGE=${IMAGE%:*}-builder:${IMAGE##*:}
CACHE=${BACKPROP_TEST_CACHE:-/var/cache/backprop-docker-test}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-100}
SMOKE_STEPS=${SMOKE_STEPS:-200}
DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
# The host's CA folder: holds the proxy's CA on these machines (empty or absent elsewhere).
HOST_CA_DIR=/usr/local/share/ca-certificates
CTR=backprop-test-$$
WORK=$(mktemp -d /tmp/backprop-docker-test.XXXXXX)

step() { printf '\n== [%4ss] %s\n' "$(($(date +%s) - T_START))" "$*"; }
die() { printf 'docker/test.sh: FAIL: %s\n' "$*" >&2; exit 1; }

PODMAN=(podman --runtime runc)
cleanup() {
    local rc=$?
    if podman container exists "$CTR" 2>/dev/null; then
        if [ "$rc" -ne 0 ]; then
            echo "--- container logs (last 40 lines) ---" >&2
            podman logs --tail 40 "$CTR" >&2 2>&1 || true
        fi
        "${PODMAN[@]}" rm -f -v -t 5 "$CTR" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run as root (buildah/podman/debootstrap need it here)"
mkdir -p "$CACHE"

# ------------------------------------------------------------------------ 1. tools
step "tools: buildah podman runc debootstrap"
need=()
for pair in buildah:buildah podman:podman runc:runc debootstrap:debootstrap \
            iptables:iptables /usr/lib/cni/bridge:containernetworking-plugins \
            /usr/lib/cni/portmap:containernetworking-plugins; do
    cmd=${pair%%:*} pkg=${pair#*:}
    if [[ $cmd == /* ]]; then [ -e "$cmd" ] || need+=("$pkg")
    else command -v "$cmd" >/dev/null || need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >/dev/null
fi
podman --version; buildah --version; runc --version | head -1

# Which Rust the Dockerfile wants: its `ARG RUST_VERSION=...` default.
RUST_VERSION=$(sed -n 's/^ARG RUST_VERSION=\([0-9][0-9.]*\).*/\1/p' "$DOCKERFILE" | head -1)
[ -n "$RUST_VERSION" ] || die "no 'ARG RUST_VERSION=' in $DOCKERFILE"
RUST_IMAGE=docker.io/library/rust:${RUST_VERSION}-slim-bookworm
grep -qF 'FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm' "$DOCKERFILE" \
    || die "the Dockerfile's builder FROM line is not rust:\${RUST_VERSION}-slim-bookworm"

# ------------------------------------------------------------------------ 2. base images
# The Debian mirror apt uses here, and its security archive if it has one.
apt_uri() { # $1 = suite
    apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null \
        | awk -v s="$1" '$1 == s { print $2; exit }'
}

make_debian_image() {
    local mirror security rootfs
    mirror=$(apt_uri bookworm)
    security=$(apt_uri bookworm-security)
    [ -n "$mirror" ] || die "apt has no Debian bookworm source configured on this machine \
(apt-get indextargets lists none); add one to /etc/apt/sources.list.d/ and run apt-get update"
    rootfs="$WORK/rootfs"
    echo "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # Slim it the way the official -slim image is: no docs, man pages or locales now or
    # in later installs, no apt lists or caches.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Install-Recommends "false";
EOF
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # The security archive only where this machine's apt has one.
    if [ -n "$security" ]; then
        cat >>"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* \
           "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* \
           "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log \
           "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/etc/resolv.conf \
           "$rootfs"/etc/hostname
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} +
    tar --numeric-owner --xattrs -C "$rootfs" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
      | podman import \
          --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
          --change 'CMD ["bash"]' \
          --message "debootstrap minbase bookworm from $mirror (docker/test.sh)" \
          - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

make_rust_image() {
    local sysroot host_version tc ctr mnt rustup_bin
    sysroot=$(rustc --print sysroot) || die "no host Rust toolchain (rustc) to build $RUST_IMAGE from"
    host_version=$(rustc --version | awk '{print $2}')
    case "$host_version" in
        "$RUST_VERSION"|"$RUST_VERSION".*) ;;
        *) echo "WARNING: the host's rustc is $host_version; tagging it as $RUST_IMAGE anyway" >&2 ;;
    esac
    rustup_bin=$(command -v rustup) || die "no rustup on the host"
    tc="${host_version}-x86_64-unknown-linux-gnu"
    echo "rust:$RUST_VERSION from the host's toolchain $sysroot (rustc $host_version)"
    ctr=$(buildah from --pull=never "$DEBIAN_IMAGE")
    # What the official slim image adds: a C toolchain for linking and for -sys crates.
    buildah run --isolation chroot "$ctr" -- sh -c \
        'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates gcc libc6-dev >/dev/null && rm -rf /var/lib/apt/lists/*'
    mnt=$(buildah mount "$ctr")
    mkdir -p "$mnt/usr/local/rustup/toolchains/$tc" "$mnt/usr/local/cargo/bin"
    # The toolchain without its docs (share/) or sources: rustc, cargo, std, rustfmt, clippy.
    tar -C "$sysroot" --exclude='./share' --exclude='./lib/rustlib/src' \
        --exclude='./lib/rustlib/rustc-src' -cf - . \
      | tar -C "$mnt/usr/local/rustup/toolchains/$tc" -xf -
    cp "$rustup_bin" "$mnt/usr/local/cargo/bin/rustup"
    for proxy in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
        ln -f "$mnt/usr/local/cargo/bin/rustup" "$mnt/usr/local/cargo/bin/$proxy"
    done
    buildah umount "$ctr" >/dev/null
    buildah config \
        --env RUSTUP_HOME=/usr/local/rustup \
        --env CARGO_HOME=/usr/local/cargo \
        --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env RUST_VERSION="$host_version" \
        --label org.backprop.host-rustc="$host_version" \
        "$ctr"
    buildah run --isolation chroot "$ctr" -- sh -c \
        "rustup default $tc >/dev/null 2>&1 && rustc --version && cargo --version"
    buildah commit --quiet --rm "$ctr" "$RUST_IMAGE" >/dev/null
}

step "base image $DEBIAN_IMAGE"
if podman image exists "$DEBIAN_IMAGE"; then
    echo "present (cached)"
else
    t=$(date +%s); make_debian_image; echo "made in $(($(date +%s) - t)) s"
fi
step "base image $RUST_IMAGE"
if podman image exists "$RUST_IMAGE"; then
    echo "present (cached)"
else
    t=$(date +%s); make_rust_image; echo "made in $(($(date +%s) - t)) s"
fi

# ------------------------------------------------------------------------ 3. build
step "build $IMAGE from the unmodified docker/Dockerfile"
ca_mount=()
if compgen -G "$HOST_CA_DIR/*.crt" >/dev/null; then
    ca_mount=(--volume "$HOST_CA_DIR:/usr/local/share/ca-certificates:ro")
fi
t=$(date +%s)
# --format docker: the OCI image format has no HEALTHCHECK; podman honours it in docker's.
# Two invocations: the builder stage alone, tagged, so that its cached layers (compiled
# dependencies) survive the `image prune` below; then the whole file, whose builder steps
# are then all cache hits. The full log goes to a file; steps, cache hits and cargo's
# summary lines are shown.
build() { # $1 = tag, rest = extra buildah args
    local tag=$1; shift
    { buildah build --isolation chroot --pull=never --layers --format docker \
          "${ca_mount[@]}" "$@" -f "$DOCKERFILE" -t "$tag" "$REPO" 2>&1
      echo $? >"$WORK/build.rc"; } \
      | tee -a "$WORK/build.log" \
      | { grep -E --line-buffered '^(\[[0-9]+/[0-9]+\] )?STEP|^COMMIT|Compiling backprop|Finished|^error' || true; }
    [ "$(cat "$WORK/build.rc")" = 0 ] || { tail -40 "$WORK/build.log" >&2; die "image build failed"; }
}
build "$BUILDER_IMAGE" --target builder
build "$IMAGE"
BUILD_SECONDS=$(($(date +%s) - t))
# Drop untagged leftovers of earlier builds (the builder stages of older sources), so
# repeated runs don't fill the disk; the tagged images and their layers stay as cache.
podman image prune -f >/dev/null || true
ALL_STEPS=$(grep -c -E '^(\[[0-9]+/[0-9]+\] )?STEP' "$WORK/build.log" || true)
CACHED_STEPS=$(grep -c -- '--> Using cache' "$WORK/build.log" || true)
# Counted over both invocations: the second always reuses the first's builder steps.
BUILD_STEPS="$CACHED_STEPS of $ALL_STEPS steps from cache"
echo "built in ${BUILD_SECONDS} s ($BUILD_STEPS)"

SIZE_BYTES=$(podman image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "image size: ${SIZE_MB} MB"
awk -v b="$SIZE_BYTES" -v m="$MAX_IMAGE_MB" 'BEGIN { exit !(b < m * 1e6) }' \
    || die "image is ${SIZE_MB} MB, limit ${MAX_IMAGE_MB} MB"
HEALTH_CMD=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
case "$HEALTH_CMD" in *backprop*health*) ;; *) die "image has no HEALTHCHECK running backprop health: $HEALTH_CMD" ;; esac

# ------------------------------------------------------------------------ 4. run
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "run $CTR on 127.0.0.1:$PORT (runc)"
# --health-interval disable: no systemd here to schedule the periodic checks (podman
# would log errors trying); this script runs the image's check itself below.
"${PODMAN[@]}" run -d --name "$CTR" --health-interval disable \
    --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
    -p "127.0.0.1:$PORT:50051" "$IMAGE" >/dev/null 2>"$WORK/run.err" \
    || { cat "$WORK/run.err" >&2; die "podman run failed"; }
# podman 4.3 still tries systemd for the health timer and logs that it can't: noise here.
grep -v 'systemd connection' "$WORK/run.err" >&2 || true

step "wait for healthy (the image's HEALTHCHECK: backprop health)"
healthy=""
for _ in $(seq 1 60); do
    state=$(podman inspect --format '{{.State.Status}}' "$CTR" 2>/dev/null || echo gone)
    [ "$state" = running ] || die "container is $state, not running"
    if podman healthcheck run "$CTR" >/dev/null 2>&1; then healthy=yes; break; fi
    sleep 1
done
[ -n "$healthy" ] || die "container not healthy after 60 s"
HEALTH_STATUS=$(podman inspect --format '{{.State.Health.Status}}' "$CTR" 2>/dev/null \
    || podman inspect --format '{{.State.Healthcheck.Status}}' "$CTR")
echo "health: $HEALTH_STATUS"
[ "$HEALTH_STATUS" = healthy ] || die "podman reports health '$HEALTH_STATUS'"

step "not root"
PID=$(podman inspect --format '{{.State.Pid}}' "$CTR")
SERVER_UID=$(awk '/^Uid:/ { print $2 }' "/proc/$PID/status")
EXEC_UID=$("${PODMAN[@]}" exec "$CTR" id -u)
echo "server process: uid $SERVER_UID ($(podman top "$CTR" user,comm | tail -n +2 | head -1)); podman exec id -u: $EXEC_UID"
[ "$SERVER_UID" != 0 ] && [ "$EXEC_UID" != 0 ] || die "the server runs as root"

step "JSON logs on stdout"
FIRST_LOG=$(podman logs "$CTR" 2>/dev/null | head -1)
echo "$FIRST_LOG"
python3 -c 'import json, sys; json.loads(sys.argv[1])' "$FIRST_LOG" \
    || die "first log line is not JSON"

# ------------------------------------------------------------------------ 5. smoke training
step "smoke: CreateModel + TrainStep x $SMOKE_STEPS + Forward through 127.0.0.1:$PORT"
VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c 'import grpc, grpc_tools, grpc_health' 2>/dev/null; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        grpcio grpcio-tools grpcio-health-checking
fi
mkdir -p "$WORK/stubs"
"$VENV/bin/python" -m grpc_tools.protoc -I "$REPO/proto" \
    --python_out="$WORK/stubs" --grpc_python_out="$WORK/stubs" \
    "$REPO/proto/backprop/v1/backprop.proto"
cat >"$WORK/smoke.py" <<'EOF'
"""Trains a small net on three separable 2-D blobs through the container's port."""
import random
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from backprop.v1 import backprop_pb2 as pb, backprop_pb2_grpc as pb_grpc

address, steps = sys.argv[1], int(sys.argv[2])
channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=30)

health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
print("health (host, through the port):", health_pb2.HealthCheckResponse.ServingStatus.Name(health.status))
assert health.status == health_pb2.HealthCheckResponse.SERVING

rng = random.Random(0)
centres = [(-2.0, -2.0), (2.0, -2.0), (0.0, 2.0)]
xs, ys = [], []
for i in range(96):
    c = i % 3
    xs += [centres[c][0] + rng.gauss(0, 0.7), centres[c][1] + rng.gauss(0, 0.7)]
    ys.append(c)
x = pb.Tensor(shape=[len(ys), 2], values=xs)

stub = pb_grpc.TrainerStub(channel)
spec = pb.ModelSpec(
    input_dim=2, num_classes=3,
    hidden=[pb.HiddenLayer(units=16, activation=pb.ACTIVATION_RELU)],
    loss=pb.LOSS_KIND_SOFTMAX,
    optimizer=pb.Optimizer(kind=pb.OPTIMIZER_KIND_ADAM, learning_rate=0.05),
    init=pb.Init(seed=7),
)
created = stub.CreateModel(pb.CreateModelRequest(spec=spec), timeout=10)
print(f"CreateModel: id {created.model_id[:8]}..., {created.parameter_count} parameters")

t = time.monotonic()
first = last = None
for _ in range(steps):
    r = stub.TrainStep(pb.TrainStepRequest(model_id=created.model_id, x=x, labels=ys), timeout=10)
    if first is None:
        first = r
    last = r
ms = (time.monotonic() - t) * 1000 / steps
print(f"TrainStep x {steps}: loss {first.losses.total_loss:.4f} -> {last.losses.total_loss:.4f}, "
      f"step {last.step}, {ms:.2f} ms/step")

fwd = stub.Forward(pb.ForwardRequest(model_id=created.model_id, x=x, labels=ys), timeout=10)
print(f"Forward: scores {list(fwd.scores.shape)}, loss {fwd.losses.total_loss:.4f}, accuracy {fwd.accuracy:.3f}")
# Kept for the restart check (the image keeps sessions in its state volume).
with open(sys.argv[3], "w") as f:
    f.write(f"{created.model_id} {last.step}")

assert last.step == steps, last.step
assert last.losses.total_loss < 0.5 * first.losses.total_loss, "loss did not halve"
assert fwd.accuracy >= 0.9, f"accuracy {fwd.accuracy}"
print("smoke: OK")
EOF
SMOKE_OUT=$(PYTHONPATH="$WORK/stubs" "$VENV/bin/python" "$WORK/smoke.py" "127.0.0.1:$PORT" "$SMOKE_STEPS" "$WORK/kept" 2>&1) \
    || { echo "$SMOKE_OUT" >&2; die "smoke training failed"; }
echo "$SMOKE_OUT"

# ------------------------------------------------------------------------ 6. stop
step "stop (SIGTERM, graceful)"
t=$(date +%s)
"${PODMAN[@]}" stop -t 15 "$CTR" >/dev/null 2>"$WORK/stop.err" \
    || { cat "$WORK/stop.err" >&2; die "podman stop failed"; }
grep -v 'systemd connection' "$WORK/stop.err" >&2 || true
EXIT_CODE=$(podman inspect --format '{{.State.ExitCode}}' "$CTR")
echo "stopped in $(($(date +%s) - t)) s, exit code $EXIT_CODE"
[ "$EXIT_CODE" = 0 ] || die "server exited with $EXIT_CODE on SIGTERM"

# ------------------------------------------------------------------------ 7. restart
step "restart: the session trained above comes back from the state volume"
"${PODMAN[@]}" start "$CTR" >/dev/null 2>"$WORK/start.err" \
    || { cat "$WORK/start.err" >&2; die "podman start failed"; }
for _ in $(seq 1 60); do
    if podman healthcheck run "$CTR" >/dev/null 2>&1; then break; fi
    sleep 1
done
cat >"$WORK/restart.py" <<'EOF'
import sys
import grpc
from backprop.v1 import backprop_pb2 as pb, backprop_pb2_grpc as pb_grpc
model_id, step = open(sys.argv[2]).read().split()
stub = pb_grpc.TrainerStub(grpc.insecure_channel(sys.argv[1]))
got = stub.GetModel(pb.GetModelRequest(model_id=model_id), timeout=10)
print(f"after restart: model {model_id[:8]}... at step {got.step} (was {step})")
assert got.step == int(step), (got.step, step)
stub.DeleteModel(pb.DeleteModelRequest(model_id=model_id), timeout=10)
EOF
RESTART_OUT=$(PYTHONPATH="$WORK/stubs" "$VENV/bin/python" "$WORK/restart.py" "127.0.0.1:$PORT" "$WORK/kept" 2>&1) \
    || { echo "$RESTART_OUT" >&2; die "the session did not survive the restart"; }
echo "$RESTART_OUT"
"${PODMAN[@]}" stop -t 15 "$CTR" >/dev/null 2>&1 || true

TOTAL=$(($(date +%s) - T_START))
cat <<EOF

== docker/test.sh summary
image:        $IMAGE ($(podman image inspect --format '{{.Id}}' "$IMAGE" | cut -c1-12))
image size:   ${SIZE_MB} MB (limit ${MAX_IMAGE_MB} MB)
build time:   ${BUILD_SECONDS} s ($BUILD_STEPS)
health:       $HEALTH_STATUS (HEALTHCHECK: backprop health)
user:         uid $SERVER_UID (not root)
smoke:
$(printf '%s\n' "$SMOKE_OUT" | sed 's/^/  /')
restart:      $RESTART_OUT
total time:   ${TOTAL} s
docker/test.sh: OK
EOF
