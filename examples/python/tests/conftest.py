"""Fixtures: the real server on 127.0.0.1 (a free port), and a client for it; a second
one with --auth-tokens; three replicas behind nginx.

The binary is $BACKPROP_BIN (tests/python_suite.sh sets it to the build it makes), or
target/release/backprop. The server writes its bound address to a file once listening; it is stopped with
SIGTERM, as a process manager would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1]
REPO = EXAMPLES.parents[1]
sys.path.insert(0, str(EXAMPLES))

from backprop_client import connect  # noqa: E402


@contextlib.contextmanager
def serve(workdir: Path, *extra_args: str):
    """The server on 127.0.0.1 (a free port) with `extra_args`, its address yielded once
    it listens; SIGTERM at the end."""
    binary = Path(os.environ.get("BACKPROP_BIN", REPO / "target" / "release" / "backprop"))
    if not binary.is_file():
        pytest.fail(
            f"server binary {binary} not found: run `cargo build --release --bin backprop` "
            "(tests/python_suite.sh does) or set BACKPROP_BIN"
        )
    address_file, log_path = workdir / "address", workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0",
             "--address-file", str(address_file), "--shutdown-grace-secs", "2",
             *extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not address_file.exists():
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"server wrote no address in 30 s:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield address_file.read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server_address(tmp_path_factory) -> str:
    with serve(tmp_path_factory.mktemp("server")) as address:
        yield address


# A token for `auth_server` (tenant "py"); at least 16 printable characters.
AUTH_TOKEN = "python-suite-token-0123456789abcdef"


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory) -> str:
    """A second server that needs `authorization: Bearer AUTH_TOKEN` on every call."""
    workdir = tmp_path_factory.mktemp("auth-server")
    tokens = workdir / "tokens"
    tokens.write_text(f"{AUTH_TOKEN} py\n")
    with serve(workdir, "--auth-tokens", str(tokens)) as address:
        yield address


@pytest.fixture(scope="session")
def channel_and_stub(server_address):
    channel, stub = connect(server_address)
    with channel:
        yield channel, stub


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The example addresses of deploy/nginx/backprop-upstreams.conf, replica by replica.
_SHIPPED = ["10.0.0.10:50051", "10.0.0.11:50051", "10.0.0.12:50051"]


@pytest.fixture(scope="session")
def nginx_replicas(tmp_path_factory) -> str:
    """Three replicas (--replica-id backprop-0..2) behind nginx with the shipped routing
    configuration of deploy/nginx (only the addresses rewritten); yields nginx's address."""
    nginx = next((p for p in ("/usr/sbin/nginx", "/usr/bin/nginx") if Path(p).exists()), None)
    if nginx is None:
        pytest.fail("nginx is not installed: tests/run_all.sh installs it")
    root = tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as stack:
        addresses = []
        for i in range(3):
            workdir = root / f"backprop-{i}"
            workdir.mkdir()
            addresses.append(stack.enter_context(serve(workdir, "--replica-id", f"backprop-{i}")))
        conf = root / "nginx"
        (conf / "tmp").mkdir(parents=True)
        deploy = REPO / "deploy" / "nginx"
        for name in ("backprop-routing.conf", "backprop-server.conf", "backprop-replicas.map"):
            (conf / name).write_text((deploy / name).read_text())
        upstreams = (deploy / "backprop-upstreams.conf").read_text()
        for shipped, address in zip(_SHIPPED, addresses):
            assert shipped in upstreams
            upstreams = upstreams.replace(shipped, address)
        (conf / "backprop-upstreams.conf").write_text(upstreams)
        port = _free_port()
        temp = "\n".join(
            f"  {kind}_temp_path {conf}/tmp/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (conf / "nginx.conf").write_text(
            f"daemon off;\nmaster_process off;\npid {conf}/nginx.pid;\n"
            f"error_log {conf}/error.log warn;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n  access_log off;\n{temp}\n  include backprop-routing.conf;\n"
            f"  server {{\n    listen 127.0.0.1:{port} http2;\n"
            f"    include backprop-server.conf;\n  }}\n}}\n"
        )
        proc = subprocess.Popen(
            [nginx, "-p", str(conf), "-c", str(conf / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=open(conf / "stderr.log", "wb"),
        )
        stack.callback(lambda: (proc.kill(), proc.wait()))
        import socket

        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start:\n{(conf / 'stderr.log').read_text()}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
