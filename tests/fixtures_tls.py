"""A TLS front for the session's PostgreSQL: ``sslmode=verify-full`` against a real handshake.

pgserver's PostgreSQL is built without OpenSSL, so the server itself cannot speak TLS. The
front does what the server would: it answers the client's SSLRequest with ``S``, completes a
TLS handshake with a certificate from a throwaway CA, and relays the decrypted bytes to the
real server over plain TCP. libpq checks the certificate and the name exactly as it would
against a TLS-enabled server, and everything after the handshake (startup, authentication,
queries) is the real server's. A client that does not ask for TLS is turned away, so a
connection through the front is a TLS connection.

    with TlsFront(("127.0.0.1", port), cert, key) as front:  # front.port, front.handshakes
        ...
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The first packet of a PostgreSQL connection may be one of these 8-byte requests (length 8,
# then a code); anything else is a StartupMessage, i.e. a client that wants no encryption.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass(frozen=True)
class Authority:
    """A certificate authority: ``pem`` is what a client names as ``sslrootcert``."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem: Path


@dataclass(frozen=True)
class ServerCertificate:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def authority(directory: Path, common_name: str) -> Authority:
    """A new self-signed CA, its certificate written to ``directory/<common_name>.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _validity(builder).sign(key, hashes.SHA256())
    pem = directory / f"{common_name}.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(key, cert, pem)


def server_certificate(ca: Authority, directory: Path, dns: Sequence[str],
                       ips: Sequence[str] = ()) -> ServerCertificate:
    """A server certificate signed by ``ca`` for the names ``dns`` and addresses ``ips``
    (subjectAltName: what libpq's verify-full compares the URL's host with)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(dns[0]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    cert = _validity(builder).sign(ca.key, hashes.SHA256())
    cert_path, key_path = directory / f"{dns[0]}.crt", directory / f"{dns[0]}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return ServerCertificate(cert_path, key_path)


class TlsFront:
    """A TLS-terminating PostgreSQL front on ``127.0.0.1:port``, relaying to ``upstream``.

    Counts what it saw: ``handshakes`` completed, ``failed_handshakes`` (the client refused
    the certificate), and ``refused`` clients that asked for no TLS. libpq checks the name on
    the certificate after the handshake, so a wrong name counts as a handshake. A client may
    give up before the front has noticed: read the counts after :meth:`wait_idle`.
    """

    def __init__(self, upstream: tuple[str, int], certificate: ServerCertificate):
        self.upstream = upstream
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certificate.cert, certificate.key)
        self.handshakes = 0
        self.failed_handshakes = 0
        self.refused = 0
        self.port = 0
        self._active = 0
        self._idle = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-front", daemon=True)
        self._thread.start()
        self._started.wait(timeout=30)
        if not self.port:
            raise RuntimeError("the TLS front did not start")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once no connection is open through the front (every count is final)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._active == 0, timeout):
                raise TimeoutError(f"{self._active} connection(s) still open through the TLS front")

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._idle:
            self._active += 1
        try:
            code = await _request(reader)
            if code == GSSENC_REQUEST:  # no GSSAPI here: 'N', and the client asks again
                writer.write(b"N")
                await writer.drain()
                code = await _request(reader)
            if code != SSL_REQUEST:
                self.refused += 1
                return
            writer.write(b"S")
            await writer.drain()
            try:
                await writer.start_tls(self.context)
            except (ssl.SSLError, OSError):
                self.failed_handshakes += 1
                return
            self.handshakes += 1
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            try:
                relays = [asyncio.ensure_future(_relay(reader, up_writer)),
                          asyncio.ensure_future(_relay(up_reader, writer))]
                # Either side hanging up ends the connection, as it would at the server.
                _, pending = await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
            finally:
                up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            writer.close()
            with self._idle:
                self._active -= 1
                self._idle.notify_all()


async def _request(reader: asyncio.StreamReader) -> int | None:
    """The code of an 8-byte SSLRequest/GSSENCRequest, or None for any other first packet."""
    length, code = struct.unpack("!ii", await reader.readexactly(8))
    return code if length == 8 else None


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        return


@dataclass(frozen=True)
class TlsServer:
    """What a test needs to reach the session's server through the front."""

    front: TlsFront
    ca: Authority
    workdir: Path

    @property
    def port(self) -> int:
        return self.front.port


@pytest.fixture
def tls_postgres(postgres_url: str, tmp_path: Path) -> Iterator[TlsServer]:
    """The session's PostgreSQL behind a TLS front whose certificate, from a CA of this test
    (``ca.pem``), names ``localhost`` and ``127.0.0.1``."""
    parts = urlsplit(postgres_url)
    workdir = tmp_path / "tls"
    workdir.mkdir()
    ca = authority(workdir, "ca")
    certificate = server_certificate(ca, workdir, ["localhost"], ["127.0.0.1"])
    with TlsFront((parts.hostname or "127.0.0.1", parts.port or 5432), certificate) as front:
        yield TlsServer(front, ca, workdir)
