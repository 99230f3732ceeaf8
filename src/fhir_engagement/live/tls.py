"""The MLLP listener's TLS context, built once at start-up from the ``mllp_tls_*`` settings.

HL7 v2 feeds carry children's NHS numbers, names and birth dates; on any network but loopback
they must be encrypted. With ``mllp_tls_client_ca`` the listener also demands a client
certificate signed by that CA (mutual TLS), so only known senders can raise Flags and Tasks.
A file that is missing, unreadable or not what it should be stops ``serve`` with a ConfigError
naming the setting, rather than a listener that silently accepts plain TCP.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from fhir_engagement.config import Settings
from fhir_engagement.errors import ConfigError

__all__ = ["mllp_tls_context"]


def mllp_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server context (TLS 1.2 or later), or None when no certificate is set.

    Raises:
        ConfigError: a setting is missing its partner, or names a file that cannot be used.
    """
    cert, key, client_ca = settings.mllp_tls_cert, settings.mllp_tls_key, settings.mllp_tls_client_ca
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None or key is None:
        missing = "mllp_tls_cert" if cert is None else "mllp_tls_key"
        raise ConfigError("<settings>", missing, "MLLP over TLS needs both mllp_tls_cert and "
                          "mllp_tls_key (mllp_tls_client_ca adds mutual TLS to them)")
    for path, name in ((cert, "mllp_tls_cert"), (key, "mllp_tls_key"),
                       (client_ca, "mllp_tls_client_ca")):
        _readable(path, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigError(str(cert), "mllp_tls_cert/mllp_tls_key", "not a certificate and its "
                          f"private key in PEM ({exc.reason or exc})") from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise ConfigError(str(client_ca), "mllp_tls_client_ca",
                              f"not a CA certificate in PEM ({exc.reason or exc})") from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _readable(path: Path | None, name: str) -> None:
    if path is None:
        return
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ConfigError(str(path), name, f"cannot read: {exc.strerror or exc}") from exc
