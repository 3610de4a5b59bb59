"""Issue 21: a remote server without secrets in clear.

``arkor-nb serve --allow-remote`` on a non-loopback address refuses plain HTTP
(one clear line) unless ``--insecure-http``; with ``--tls-cert/--tls-key`` it
serves HTTPS (uvicorn's own TLS), and ``ak.LocalBackend(url="https://...",
verify="cert.pem")`` trusts the self-signed certificate made here with the
``cryptography`` package for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import arkor_nb as ak
from arkor_nb.core.home import child_env, read_runtime
from arkor_nb.local.server.launch import tls_refusal
from tests.local.server_harness import wait_for

TOKEN = "t" * 32


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "arkor-nb test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def serve(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "arkor_nb.cli", "serve", "--home", str(home), "--port", "0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**child_env(), **(env or {})})


def test_plain_http_on_a_remote_address_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = serve(tmp_path / "home", "--host", "0.0.0.0", "--allow-remote", "--token", TOKEN)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "plain HTTP" in lines[0] and "--tls-cert" in lines[0] and "--insecure-http" in lines[0]
    assert read_runtime(tmp_path / "home") is None  # it never listened


def test_tls_options_are_checked_before_listening(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    assert tls_refusal("0.0.0.0", None, None, insecure_http=True) is None
    assert tls_refusal("127.0.0.1", None, None, insecure_http=False) is None
    assert tls_refusal("0.0.0.0", cert, key, insecure_http=False) is None
    assert "go together" in (tls_refusal("0.0.0.0", cert, None, insecure_http=False) or "")
    assert "no such file" in (tls_refusal("0.0.0.0", cert, tmp_path / "nope.pem", False) or "")


def test_https_server_round_trips_with_a_trusted_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    home = tmp_path / "home"
    proc = serve(home, "--tls-cert", str(cert), "--tls-key", str(key), "--token", TOKEN,
                 env={"ARKOR_NB_SYNTHETIC_STEP_S": "0.01"})
    try:
        runtime = wait_for(lambda: read_runtime(home), 60, what="the server's runtime file")
        url = runtime["url"]
        assert url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))

        def healthy() -> bool:
            try:
                return httpx.get(url + "/healthz", verify=trusted, trust_env=False).is_success
            except httpx.ConnectError as err:
                assert "CERTIFICATE" not in str(err), err
                return False  # not listening yet

        wait_for(healthy, 30, what="/healthz over TLS")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url + "/healthz", trust_env=False)  # the public CAs do not know it
        seen: list[Any] = []
        trainer = ak.create_trainer(
            name="tls", model="arkor-nb/synthetic", max_steps=5,
            backend=ak.LocalBackend(url=url, token=TOKEN, verify=str(cert)),
            callbacks={"on_log": lambda ctx: seen.append(ctx.step)})
        result = trainer.wait()
        assert result.job.status == "completed"
        assert sorted(set(seen)) == [1, 2, 3, 4, 5]  # the event stream came over TLS
        assert ak.jobs(backend=ak.LocalBackend(url=url, token=TOKEN, verify=str(cert)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_missing_certificate_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ak.ConfigError, match="verify"):
        ak.LocalBackend(url="https://127.0.0.1:1", token=TOKEN, verify=str(tmp_path / "no.pem"))
