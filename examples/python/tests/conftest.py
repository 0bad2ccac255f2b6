"""Fixtures: the real release server on 127.0.0.1 (a free port), and a client for it.

The binary is $BACKPROP_BIN, or target/release/backprop (tests/python_suite.sh builds
it). The server writes its bound address to a file once listening; it is stopped with
SIGTERM, as a process manager would.
"""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def server_address(tmp_path_factory) -> str:
    binary = Path(os.environ.get("BACKPROP_BIN", REPO / "target" / "release" / "backprop"))
    if not binary.is_file():
        pytest.fail(
            f"server binary {binary} not found: run `cargo build --release --bin backprop` "
            "(tests/python_suite.sh does) or set BACKPROP_BIN"
        )
    workdir = tmp_path_factory.mktemp("server")
    address_file, log_path = workdir / "address", workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", "127.0.0.1:0",
             "--address-file", str(address_file), "--shutdown-grace-secs", "2"],
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
def channel_and_stub(server_address):
    channel, stub = connect(server_address)
    with channel:
        yield channel, stub
