"""Logging for serve: one JSON object a line, and no patient identifiers at INFO or above.

Log lines carry counts, batch ids (hashes), origins and reasons. As a second line of defence,
anything shaped like an NHS number or a Patient reference is masked before a line is written.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

__all__ = ["JsonFormatter", "RedactIdentifiers", "setup_logging"]

_IDENTIFIERS = re.compile(r"\b\d{3}\s?\d{3}\s?\d{4}\b|nhs:\d+|Patient/[A-Za-z0-9.\-]+")


class RedactIdentifiers(logging.Filter):
    """Masks NHS numbers and Patient references in every record at INFO and above."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            record.msg = _IDENTIFIERS.sub("[redacted]", record.getMessage())
            record.args = ()
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` a line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def setup_logging(level: str = "INFO") -> None:
    """Send the adapter's logs to stderr as JSON, identifiers masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactIdentifiers())
    root = logging.getLogger("fhir_engagement")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
