"""A thin async FHIR REST client on one shared aiohttp session.

Building a request is separate from sending it; ``_answer`` is the one place an HTTP answer
becomes a named error (errors.py): no answer, 408, 429 and 5xx are retryable (with the server's
Retry-After), 401/403 ask for a new credential, 409/412 are a version conflict, any other 4xx is
permanent, and a 2xx whose Bundle is malformed is a bad answer, never a TypeError further on.
Retrying is the outbox's decision, not this module's.

A search follows the server's ``next`` links (as fhirpy's ``fetch_all`` does), up to a page cap,
and only on the base URL's own origin: the bearer token goes with every request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from fhir_engagement.errors import (
    AuthRequiredError,
    BadAnswerError,
    ConflictError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from fhir_engagement.fhirserver.auth import TokenSource

__all__ = ["FhirClient", "outcome_text"]

FHIR_JSON = "application/fhir+json"
MAX_PAGES = 50  # a search reads at most this many pages; the rest is counted, not read
_RETRYABLE = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
_CONFLICT = frozenset({HTTPStatus.CONFLICT, HTTPStatus.PRECONDITION_FAILED})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOG = logging.getLogger(__name__)


async def _no_token(_: bool) -> str | None:
    return None


class FhirClient:
    """Read, search and transaction against one FHIR server base URL.

    ``pages_capped`` counts the searches cut short at ``max_pages`` (for /metrics): a catch-up
    search after a long outage may have more to read than one pass should take.
    """

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, token: TokenSource = _no_token,
        timeout: float = 30.0, max_pages: int = MAX_PAGES,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """``headers`` go on every request (a national API's ``TraceID`` and the like)."""
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._session, self._token = session, token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_pages = max_pages
        self.pages_capped = 0

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; the transaction-response, or a DeliveryError."""
        return await self._send("POST", self.base_url, bundle, expect_bundle=True)

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return await self._send("GET", f"{self.base_url}/{resource_type}/{resource_id}")

    async def search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every resource a search finds, page after page, up to ``max_pages`` pages.

        Raises:
            BadAnswerError: a page is not a well-formed Bundle, or its next page is elsewhere.
        """
        url = f"{self.base_url}/{resource_type}"
        query: Mapping[str, str] | None = params
        found: list[dict[str, Any]] = []
        for _ in range(self.max_pages):
            bundle = await self._send("GET", url, params=query, expect_bundle=True)
            found += [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
            following = self._next_page(bundle)
            if following is None:
                return found
            url, query = following, None  # the next link carries the query itself
        self.pages_capped += 1
        _LOG.warning("a %s search stopped at its cap of %d pages; the rest was not read",
                     resource_type, self.max_pages)
        return found

    def _next_page(self, bundle: Mapping[str, Any]) -> str | None:
        """The ``next`` link, if it is on the base URL's origin.

        A next link elsewhere is refused, not followed: the request would carry the bearer token
        to that host (a credential leak), and a server could point the adapter at any address
        inside the network it runs in (request forgery).
        """
        link = next((k.get("url") for k in bundle.get("link", []) if k.get("relation") == "next"),
                    None)
        if not isinstance(link, str) or not link:
            return None
        try:
            url = urljoin(f"{self.base_url}/", link)
            there = _origin(url)
        except ValueError as exc:
            raise BadAnswerError(HTTPStatus.OK, "a search's next link is not a URL") from exc
        if there != _origin(self.base_url):
            raise BadAnswerError(HTTPStatus.OK, f"a search's next page is on {there}, not on "
                                 f"{_origin(self.base_url)}: not followed")
        return url

    async def create(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        return await self._send("POST", f"{self.base_url}/{resource['resourceType']}", resource)

    async def update(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{resource['resourceType']}/{resource['id']}"
        return await self._send("PUT", url, resource)

    async def operation(self, resource_type: str, resource_id: str, name: str,
                        params: Mapping[str, str]) -> dict[str, Any]:
        """An instance-level operation by GET (``Subscription/{id}/$events?...``)."""
        url = f"{self.base_url}/{resource_type}/{resource_id}/{name}"
        return await self._send("GET", url, params=params)

    async def metadata(self) -> dict[str, Any]:
        return await self._send("GET", f"{self.base_url}/metadata")

    async def _send(
        self, method: str, url: str, body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None, expect_bundle: bool = False,
    ) -> dict[str, Any]:
        """One request; a 401 gets one fresh token and one more try."""
        try:
            return await self._once(method, url, body, params, False, expect_bundle)
        except AuthRequiredError:
            return await self._once(method, url, body, params, True, expect_bundle)

    async def _once(
        self, method: str, url: str, body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None, refresh: bool, expect_bundle: bool,
    ) -> dict[str, Any]:
        headers = {**self._headers, "Accept": FHIR_JSON}
        token = await self._token(refresh)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
            data = orjson.dumps(body)
        try:
            async with self._session.request(method, url, data=data, params=params,
                                             headers=headers, timeout=self._timeout) as resp:
                payload = await resp.read()
                return _answer(resp.status, resp.headers, payload, expect_bundle)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise RetryableDeliveryError(0, f"no answer from {self.base_url}: {exc!r}") from exc


def _answer(
    status: int, headers: Mapping[str, str], payload: bytes, expect_bundle: bool = False
) -> dict[str, Any]:
    """The body of a 2xx answer, or the named error the status (or a malformed Bundle) means."""
    body = _json(payload)
    if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
        problem = _bundle_problem(body) if expect_bundle else None
        if problem:
            raise BadAnswerError(status, problem)
        return body
    reason = outcome_text(body) or payload[:200].decode("utf-8", "replace")
    if status in _RETRYABLE or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        raise RetryableDeliveryError(status, reason, _retry_after(headers.get("Retry-After")))
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        raise AuthRequiredError(status, reason)
    if status in _CONFLICT:
        raise ConflictError(status, reason)
    raise PermanentDeliveryError(status, reason)


def _bundle_problem(body: Mapping[str, Any]) -> str | None:
    """What makes an answer unusable as a Bundle (the parts this client reads), or None.

    The description names the place (``entry[3]``), never the content: it goes to logs.
    """
    if body.get("resourceType") != "Bundle":
        return "the answer is not a FHIR Bundle"
    for part in ("entry", "link"):
        items = body.get(part, [])
        if not isinstance(items, list):
            return f"the Bundle's {part} is not a list"
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                return f"the Bundle's {part}[{n}] is not an object"
            if part == "entry" and not isinstance(item.get("resource", {}), dict):
                return f"the Bundle's entry[{n}].resource is not an object"
    return None


def _origin(url: str) -> str:
    """scheme://host:port, the part of a URL a credential is bound to (ValueError: no URL)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def outcome_text(body: Mapping[str, Any]) -> str:
    """The diagnostics of an OperationOutcome, one line."""
    if body.get("resourceType") != "OperationOutcome":
        return ""
    parts = [str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code", ""))
             for i in body.get("issue", []) if isinstance(i, dict)]
    return "; ".join(p for p in parts if p)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((moment - datetime.now(UTC)).total_seconds(), 0.0)
