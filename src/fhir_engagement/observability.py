"""Logging for serve: one JSON object a line, and no resource content or identifier at any level.

Log lines carry counts, batch ids (hashes), origins, HTTP statuses and exception *types*: never
a name, a birth date, a server's diagnostics text or a message's content. As a second line of
defence, anything shaped like an NHS number or a Patient reference is replaced by a keyed hash
(HMAC-SHA-256) before a line is written, and an exception is logged as its types and stack
without its message (messages of parsers and validators quote their input).

The key: ``FHIR_ENGAGEMENT_LOG_KEY`` (hex, at least 32 bytes) if set, so hashes match across
installs that share it; otherwise serve passes the store's audit key, so a log hash and an audit
row name a child the same way, and the data protection officer needs one secret, not two. A
keyed hash, because a plain hash of an NHS number is reversed by trying the billion candidates.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from fhir_engagement.errors import ConfigError

__all__ = ["KEY_VARIABLE", "JsonFormatter", "RedactIdentifiers", "log_key", "mask_identifiers",
           "setup_logging", "without_messages"]

KEY_VARIABLE = "FHIR_ENGAGEMENT_LOG_KEY"
_KEY_BYTES = 32  # HMAC-SHA-256 wants a key at least as long as its output
_CHAIN_MAX = 10  # exceptions shown of one chain: a bound, should a chain ever loop
_IDENTIFIERS = re.compile(r"\b\d{3}[ -]?\d{3}[ -]?\d{4}\b|nhs:\d+|Patient/[A-Za-z0-9.\-]+")


def mask_identifiers(text: str, key: bytes | None = None) -> str:
    """``text`` with NHS-number and Patient-reference shapes replaced: by ``[id:HASH]`` (keyed)
    when a key is given, by ``[redacted]`` otherwise."""
    if key is None:
        return _IDENTIFIERS.sub("[redacted]", text)
    return _IDENTIFIERS.sub(lambda m: f"[id:{_keyed(key, m.group())}]", text)


def _keyed(key: bytes, identifier: str) -> str:
    # Spacing and prefix are not identity: "999 000 1073" and "nhs:9990001073" hash alike.
    canonical = identifier.removeprefix("nhs:")
    if not canonical.startswith("Patient/"):
        canonical = re.sub(r"[ -]", "", canonical)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()[:16]


def log_key(env: Mapping[str, str] | None = None, fallback: bytes | None = None) -> bytes:
    """The key log hashes are made with: the environment's, else ``fallback``, else a fresh one
    (hashes then correlate within this process only).

    Raises:
        ConfigError: the environment's key is not hex, or shorter than 32 bytes.
    """
    text = (os.environ if env is None else env).get(KEY_VARIABLE)
    if not text:
        return fallback or secrets.token_bytes(_KEY_BYTES)
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ConfigError(KEY_VARIABLE, "", "not hexadecimal") from exc
    if len(key) < _KEY_BYTES:
        raise ConfigError(KEY_VARIABLE, "", f"shorter than {_KEY_BYTES} bytes ({2 * _KEY_BYTES} hex digits)")
    return key


class RedactIdentifiers(logging.Filter):
    """Replaces NHS numbers and Patient references in every record, at every level, by keyed hashes."""

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_identifiers(record.getMessage(), self.key)
        record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` a line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            entry["error"] = without_messages(record.exc_info[1])
        return orjson.dumps(entry).decode()


def without_messages(exc: BaseException) -> str:
    """The exception chain's types and stacks, without their messages (which quote input) and
    without source lines (a test's, or a developer's, may quote data)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < _CHAIN_MAX:
        stack = "".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n'
                        for f in traceback.extract_tb(current.__traceback__))
        parts.append(f"{stack}{type(current).__module__}.{type(current).__qualname__}")
        current = current.__cause__ or current.__context__
    return "\n-- while handling, or caused by --\n".join(reversed(parts))


def setup_logging(level: str = "INFO", key: bytes | None = None) -> None:
    """Send the adapter's logs (and aiohttp's warnings) to stderr as JSON, identifiers hashed.

    ``key``: the store's audit key, used unless the environment names one (see above)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactIdentifiers(log_key(fallback=key)))
    for name, threshold in (("fhir_engagement", level), ("aiohttp", "WARNING")):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(threshold)
        logger.propagate = False
