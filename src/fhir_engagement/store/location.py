"""What a ``store`` setting names: a SQLite file (the embedded default) or a PostgreSQL URL.

One place decides, so the CLI, the audit key and ``open_store`` agree, and a URL's password is
never printed: a store's location goes into summaries and error messages.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["is_database_url", "redacted"]

_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a SQLite file."""
    return location.startswith(_SCHEMES)


def redacted(location: str) -> str:
    """``location`` fit to print: a URL without its password (a file path as it is)."""
    if not is_database_url(location):
        return location
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
