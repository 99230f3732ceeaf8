"""MLLP over TLS and mutual TLS: a throwaway CA, server and client certificate per test run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fhir_engagement.config import Settings
from fhir_engagement.errors import ConfigError
from fhir_engagement.ingest.mllp import END, START
from fhir_engagement.live.app import MLLP_SERVER, build_app
from fhir_engagement.live.tls import mllp_tls_context
from fhir_engagement.pipeline import Engine
from fhir_engagement.store import SqliteStore
from tests.conftest import MAPPINGS
from tests.hl7v2.messages import nhs_number, siu

MESSAGE = siu("S26", "tls1", "T1", "20260302100000", nhs_number(7))


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
           issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey | None = None) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _issue("test CA", ca_key, "test CA", ca_key, ca=True)
    server = _issue("adapter", server_key, "test CA", ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue("pas", client_key, "test CA", ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca_path, _ = _write(tmp_path, "ca", ca)
    server_cert, server_key_path = _write(tmp_path, "server", server, server_key)
    client_cert, client_key_path = _write(tmp_path, "client", client, client_key)
    return Pki(ca_path, server_cert, server_key_path, client_cert, client_key_path)


@dataclass
class Running:
    port: int
    store: SqliteStore


@pytest.fixture
async def mutual(tmp_path: Path, engine: Engine, pki: Pki) -> AsyncIterator[Running]:
    settings = Settings(mappings_dir=MAPPINGS, store=str(tmp_path / "s.sqlite3"), mllp_port=0,
                        mllp_tls_cert=pki.server_cert, mllp_tls_key=pki.server_key,
                        mllp_tls_client_ca=pki.ca)
    store = SqliteStore(settings.store)
    app = build_app(settings, engine, store)
    runner = web.AppRunner(app)
    await runner.setup()
    yield Running(app[MLLP_SERVER].port, store)
    await runner.cleanup()
    store.close()


def _client_context(pki: Pki, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.ca)
    if with_cert:
        context.load_cert_chain(pki.client_cert, pki.client_key)
    return context


async def _exchange(port: int, context: ssl.SSLContext | None) -> bytes:
    """Send one framed message; what came back before the server closed (b"": nothing)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1" if context else None)
    try:
        writer.write(START + MESSAGE + END)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    except (ssl.SSLError, ConnectionError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def test_a_client_with_a_certificate_gets_an_aa_over_tls(mutual: Running, pki: Pki) -> None:
    answer = await _exchange(mutual.port, _client_context(pki, with_cert=True))
    msa = next(s for s in answer.strip(START + END).split(b"\r") if s.startswith(b"MSA"))
    assert msa.split(b"|")[1:3] == [b"AA", b"tls1"]


async def test_a_client_without_a_certificate_is_refused_under_mutual_tls(
    mutual: Running, pki: Pki
) -> None:
    assert await _exchange(mutual.port, _client_context(pki, with_cert=False)) == b""
    assert mutual.store.inbox_depth()[0] == 0  # nothing was taken in


async def test_a_plain_tcp_client_gets_no_ack(mutual: Running) -> None:
    assert await _exchange(mutual.port, None) == b""
    assert mutual.store.inbox_depth()[0] == 0


def test_a_missing_file_is_a_config_error_naming_the_setting(tmp_path: Path, pki: Pki) -> None:
    absent = tmp_path / "absent.key"
    settings = Settings(mllp_tls_cert=pki.server_cert, mllp_tls_key=absent)
    with pytest.raises(ConfigError, match="mllp_tls_key: cannot read") as caught:
        mllp_tls_context(settings)
    assert str(absent) in str(caught.value)
    with pytest.raises(ConfigError, match="mllp_tls_key"):
        mllp_tls_context(Settings(mllp_tls_cert=pki.server_cert))
    with pytest.raises(ConfigError, match="mllp_tls_client_ca"):
        mllp_tls_context(Settings(mllp_tls_cert=pki.server_cert, mllp_tls_key=pki.server_key,
                                  mllp_tls_client_ca=pki.server_key))  # a key, not a CA
    assert mllp_tls_context(Settings()) is None
