"""Fixtures: the real release server on 127.0.0.1 (a free port), and a client for it;
a second one with --auth-tokens.

The binary is $BACKPROP_BIN, or target/release/backprop (tests/python_suite.sh builds
it). The server writes its bound address to a file once listening; it is stopped with
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
