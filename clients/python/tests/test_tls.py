"""TLS and mutual TLS: a sessiond serving TLS with a client CA, certificates made by openssl."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from conftest import _binary, _key_entries, _sessiond
from sessiond import Client, Unauthenticated, Unavailable

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificate(dir: Path, name: str, usage: str, extra: str = "") -> None:
    """`name`.crt and `name`.key, signed by dir/ca."""
    (dir / f"{name}.ext").write_text(f"extendedKeyUsage={usage}\n{extra}")
    _openssl("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=dir)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=dir)


def _der_sha256(pem: Path) -> str:
    der = subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "der"], check=True,
                         capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """sessiond with --tls-cert, --tls-key and --tls-client-ca; answers (server, certificate dir)."""
    certs = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test CA",
             cwd=certs)
    _certificate(certs, "server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _certificate(certs, "client", "clientAuth")
    _certificate(certs, "stranger", "clientAuth")
    keys = {}
    entries = _key_entries(_binary(), keys, [("acme", "acme", "service")])
    entries.append(f'{{name: robot, tenant: robots, role: service, cert_sha256: "{_der_sha256(certs / "client.crt")}"}}')
    args = ["--tls-cert", str(certs / "server.crt"), "--tls-key", str(certs / "server.key"),
            "--tls-client-ca", str(certs / "ca.crt")]
    home = tmp_path_factory.mktemp("sessiond-tls")
    with _sessiond(home, entries, args, client_options={"ca_file": str(certs / "ca.crt")}) as server:
        server.keys = keys
        yield server, certs


def test_an_api_key_over_tls_checked_against_a_ca_file(tls):
    server, certs = tls
    with Client(server.address, api_key=server.keys["acme"], ca_file=str(certs / "ca.crt")) as client:
        token = client.create_session("web_user", user_id="tina").token
        assert client.authenticate(token).tenant == "acme"


def test_a_client_certificate_is_the_callers_credential(tls):
    server, certs = tls
    with Client(server.address, ca_file=str(certs / "ca.crt"), cert_file=str(certs / "client.crt"),
                key_file=str(certs / "client.key")) as client:
        token = client.create_session("web_user", user_id="rob").token
        assert client.authenticate(token).tenant == "robots"
    with Client(server.address, ca_file=str(certs / "ca.crt"), cert_file=str(certs / "stranger.crt"),
                key_file=str(certs / "stranger.key")) as stranger, pytest.raises(Unauthenticated) as unknown:
        stranger.create_session("web_user")
    assert unknown.value.reason == "CLIENT_CERTIFICATE_UNKNOWN"


def test_a_server_the_client_cannot_verify_or_plaintext_is_unavailable(tls):
    server, certs = tls
    with Client(server.address, api_key=server.keys["acme"], tls=True, timeout=5) as system_roots:
        with pytest.raises(Unavailable):
            system_roots.create_session("web_user")
    with Client(server.address, api_key=server.keys["acme"], timeout=5) as plaintext:
        with pytest.raises(Unavailable):
            plaintext.create_session("web_user")
