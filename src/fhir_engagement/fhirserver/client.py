"""A thin async FHIR REST client on one shared aiohttp session.

Building a request is separate from sending it; ``_send`` is the one place an HTTP status becomes
a named error (errors.py): no answer, 408, 429 and 5xx are retryable (with the server's
Retry-After), 401/403 ask for a new credential, any other 4xx is permanent. Retrying is the
outbox's decision, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import aiohttp
import orjson

from fhir_engagement.errors import (
    AuthRequiredError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from fhir_engagement.fhirserver.auth import TokenSource

__all__ = ["FhirClient", "outcome_text"]

FHIR_JSON = "application/fhir+json"
_RETRYABLE = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})


async def _no_token(_: bool) -> str | None:
    return None


class FhirClient:
    """Read, search and transaction against one FHIR server base URL."""

    def __init__(
        self, base_url: str, session: aiohttp.ClientSession, token: TokenSource = _no_token,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session, self._token = session, token
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def transaction(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """POST a transaction Bundle; the transaction-response, or a DeliveryError."""
        return await self._send("POST", self.base_url, bundle)

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return await self._send("GET", f"{self.base_url}/{resource_type}/{resource_id}")

    async def search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """The resources of the first page of a search (the adapter's searches are narrow)."""
        url = f"{self.base_url}/{resource_type}"
        bundle = await self._send("GET", url, params=params)
        return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]

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
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request; a 401 gets one fresh token and one more try."""
        try:
            return await self._once(method, url, body, params, refresh=False)
        except AuthRequiredError:
            return await self._once(method, url, body, params, refresh=True)

    async def _once(
        self, method: str, url: str, body: Mapping[str, Any] | None,
        params: Mapping[str, str] | None, refresh: bool,
    ) -> dict[str, Any]:
        headers = {"Accept": FHIR_JSON}
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
                return _answer(resp.status, resp.headers, payload)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise RetryableDeliveryError(0, f"no answer from {self.base_url}: {exc!r}") from exc


def _answer(status: int, headers: Mapping[str, str], payload: bytes) -> dict[str, Any]:
    body = _json(payload)
    if HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
        return body
    reason = outcome_text(body) or payload[:200].decode("utf-8", "replace")
    if status in _RETRYABLE or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        raise RetryableDeliveryError(status, reason, _retry_after(headers.get("Retry-After")))
    if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
        raise AuthRequiredError(status, reason)
    raise PermanentDeliveryError(status, reason)


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
