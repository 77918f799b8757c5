"""TLS certificates for tests: a throwaway CA (``trustme``) and a server cert for 127.0.0.1.

Role: lets tests run real TLS servers on loopback (the SMTP sink's STARTTLS and implicit
TLS) and make our client trust them the way an operator would, through the
``WIREWATCH_SMTP_CAFILE`` environment variable, never by turning verification off.

Fixtures: ``tls_ca`` (one CA per session), ``server_tls`` (a server-side SSL context with
a certificate for ``127.0.0.1`` and ``localhost``), ``trusted_ca`` (writes the CA to a
file and sets ``WIREWATCH_SMTP_CAFILE`` for the test). Import them with
``from certs import server_tls, tls_ca, trusted_ca``.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from workers.delivery.email import CAFILE_ENV

__all__ = ["server_context", "server_tls", "tls_ca", "trusted_ca"]


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A certificate authority that exists only for this test session."""
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose certificate, signed by ``ca``, names 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def server_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A fresh server-side context for one test's TLS server."""
    return server_context(tls_ca)


@pytest.fixture
def trusted_ca(tls_ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test CA as a PEM file, trusted by the SMTP client through the environment."""
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv(CAFILE_ENV, str(path))
    return path
