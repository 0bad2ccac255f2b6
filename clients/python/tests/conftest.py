"""The real server for the suite: $BACKPROP_BIN (default target/release/backprop of this
checkout, else target/debug/backprop), on 127.0.0.1 on a free port.

The main server starts in pytest_configure, before collection, because
sklearn's parametrize_with_checks builds its estimators at collection time: their
`address=None` reads $BACKPROP_ADDRESS, which is set here. It is stopped with SIGTERM in
pytest_unconfigure. Servers with other flags (tokens, a replica id, a session limit) are
session fixtures made with `serve`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
_SERVER: dict = {}


def _binary() -> Path:
    for candidate in (os.environ.get("BACKPROP_BIN"), REPO / "target" / "release" / "backprop",
                      REPO / "target" / "debug" / "backprop"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise pytest.UsageError(
        "no server binary: set BACKPROP_BIN or run `cargo build --release --bin backprop`")


@contextlib.contextmanager
def serve(workdir: Path, *extra_args: str, listen: str = "127.0.0.1:0"):
    """The server with `extra_args`, its address yielded once it listens; SIGTERM at
    the end (then SIGKILL after 15 s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    address_file, log_path = workdir / "address", workdir / "server.log"
    address_file.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(_binary()), "serve", "--listen", listen, "--address-file", str(address_file),
             "--shutdown-grace-secs", "1", *extra_args],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (address_file.exists() and address_file.read_text().strip()):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server wrote no address in 30 s:\n{log_path.read_text()}")
            time.sleep(0.02)
        yield address_file.read_text().strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pytest_configure(config):
    workdir = Path(tempfile.mkdtemp(prefix="backprop-client-tests-"))
    stack = contextlib.ExitStack()
    _SERVER["address"] = stack.enter_context(serve(workdir / "main"))
    _SERVER["stack"], _SERVER["workdir"] = stack, workdir
    os.environ["BACKPROP_ADDRESS"] = _SERVER["address"]


def pytest_unconfigure(config):
    if "stack" in _SERVER:
        _SERVER.pop("stack").close()


@pytest.fixture(scope="session")
def address() -> str:
    return _SERVER["address"]


@pytest.fixture(scope="session")
def client(address):
    from backprop_client import Client

    with Client(address, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def workdir() -> Path:
    return _SERVER["workdir"]


# A token for `auth_server` (tenant "py"); at least 16 printable characters.
AUTH_TOKEN = "client-suite-token-0123456789abcdef"


@pytest.fixture(scope="session")
def auth_server(workdir) -> str:
    """A server that needs `authorization: Bearer AUTH_TOKEN` on every call."""
    tokens = workdir / "tokens"
    tokens.write_text(f"{AUTH_TOKEN} py\n")
    with serve(workdir / "auth", "--auth-tokens", str(tokens)) as a:
        yield a


@pytest.fixture(scope="session")
def replica_server(workdir) -> str:
    """A server named backprop-1 among replicas (ids `backprop-1.<hex>`)."""
    with serve(workdir / "replica", "--replica-id", "backprop-1") as a:
        yield a


@pytest.fixture(scope="session")
def limited_server(workdir) -> str:
    """A server that holds one session at most."""
    with serve(workdir / "limited", "--max-sessions", "1") as a:
        yield a
