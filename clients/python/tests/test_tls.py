"""TLS and mutual TLS with certificates made here by openssl (skipped without it)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from backprop_client import AsyncClient, Client, errors
from conftest import serve

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext",
                 cwd=d)
    return d


def test_tls_and_mutual_tls(certs, workdir):
    with serve(workdir / "tls", "--tls-cert", str(certs / "server.pem"), "--tls-key",
               str(certs / "server.key"), "--tls-client-ca", str(certs / "ca.pem")) as address:
        with Client(address, tls_ca=str(certs / "ca.pem"), tls_cert=str(certs / "client.pem"),
                    tls_key=str(certs / "client.key")) as c:
            model = c.create_model(input_dim=2, num_classes=2).model_id
            assert c.train_step(model, [[1.0, 2.0]], [1]).step == 1
        # Without a client certificate the handshake is refused.
        with Client(address, tls_ca=str(certs / "ca.pem"), timeout=5, retries=0) as c:
            with pytest.raises(errors.BackpropError) as refused:
                c.list_models()
        assert refused.value.code.name in ("UNAVAILABLE", "UNAUTHENTICATED")

        async def main():
            async with AsyncClient(address, tls_ca=str(certs / "ca.pem"),
                                   tls_cert=str(certs / "client.pem"),
                                   tls_key=str(certs / "client.key")) as c:
                return await c.health()

        assert asyncio.run(main()) is True
