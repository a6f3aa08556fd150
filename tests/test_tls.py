"""Production connection settings: the worker and the starter reach Temporal over mutual TLS.

The dev server speaks plain gRPC only, so a TLS terminator on 127.0.0.1 stands in front of it (as a
load balancer or the cluster's frontend would), requiring a client certificate signed by the test
CA. An incident started through it runs on a worker connected through it with nothing but the
YUQING_TEMPORAL_TLS_* settings; a client without the certificate is turned away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.settings import Settings
from plan.roster import Roster
from runtime.client import connect
from starter import incidents
from tests.conftest import make_settings, start_dev_server
from tests.helpers import eventually, running_worker, submission


def _write_cert(
    path: Path,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Name:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return subject


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    files = {n: tmp_path / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key")}
    files |= {n: tmp_path / f"{n}.pem" for n in ("client", "client-key")}
    ca_key = _write_key(files["ca-key"])
    ca_name = _write_cert(files["ca"], "yuqing test CA", ca_key, None, ca=True)
    _write_cert(
        files["server"],
        "localhost",
        _write_key(files["server-key"]),
        (ca_name, ca_key),
        server=True,
    )
    _write_cert(
        files["client"], "yuqing-worker", _write_key(files["client-key"]), (ca_name, ca_key)
    )
    return files


@pytest_asyncio.fixture(loop_scope="session")
async def tls_frontend(pki: dict[str, Path]) -> AsyncIterator[tuple[str, list[str]]]:
    """A mutual-TLS front for a dev server: gives its address and the client certificate names
    of the connections it accepted."""
    env = await start_dev_server()
    host, _, port = env.client.service_client.config.target_host.rpartition(":")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    context.load_cert_chain(pki["server"], pki["server-key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    accepted: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        accepted.extend(v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with env:
            yield address, accepted
    finally:
        server.close()


async def test_worker_and_starter_connect_with_mutual_tls(
    tls_frontend: tuple[str, list[str]],
    pki: dict[str, Path],
    database_url: str,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    address, accepted = tls_frontend
    settings = make_settings(
        database_url,
        temporal_address=address,
        temporal_tls_ca=pki["ca"],
        temporal_tls_cert=pki["client"],
        temporal_tls_key=pki["client-key"],
        temporal_tls_server_name="localhost",
    )
    client = await connect(settings)
    async with running_worker(client, settings, executor):
        view = (
            await incidents.submit(client, settings, roster, submission(), submitted_by="zhou.ting")
        ).view
        triaged = await incidents.act(
            client,
            view.id,
            "triage",
            {"severity": "general", "category": "inquiry", "responsible_unit": "cjb"},
            "liu.yang",
        )
        assert triaged.phase.value == "handling"
        # The worker's activities ran too: the read model has the incident.
        from store import incident_rows
        from store.db import session_scope

        def listed() -> bool:
            with session_scope(settings.database_url) as s:
                return any(r.id == view.id for r in incident_rows.list_incidents(s))

        await eventually(listed)
    assert accepted and set(accepted) == {"yuqing-worker"}  # every connection by certificate


async def test_a_client_without_the_certificate_is_refused(
    tls_frontend: tuple[str, list[str]], pki: dict[str, Path]
) -> None:
    address, accepted = tls_frontend
    no_cert = Settings(
        temporal_address=address, temporal_tls_ca=pki["ca"], temporal_tls_server_name="localhost"
    )
    with pytest.raises(RuntimeError, match=r"(?i)connect|transport|tls|handshake"):
        await asyncio.wait_for(connect(no_cert), 30)
    plain = Settings(temporal_address=address)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(connect(plain), 30)
    assert accepted == []  # neither got past the handshake
