"""The one place a failed HTTP request becomes an answer, and the notify credential check.

400 bad input, 401 no credential, 413 too large, 503 the store cannot keep it (with Retry-After),
each as a FHIR OperationOutcome.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import orjson
from aiohttp import web

from fhir_engagement.errors import NotificationError, StoreError
from fhir_engagement.fhirserver.subscribe import secret_is_valid
from fhir_engagement.live.keys import SETTINGS, STORE

__all__ = ["check_credential", "check_read", "errors", "may_read", "outcome"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ISSUE_CODES = {HTTPStatus.UNAUTHORIZED: "login", HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "too-costly",
                HTTPStatus.NOT_FOUND: "not-found", HTTPStatus.REQUEST_TIMEOUT: "timeout"}


def check_credential(request: web.Request) -> None:
    """The notify credential (bearer token or shared-secret header, compared in constant time),
    or the secret ``subscribe`` gave one Subscription (fhirserver/subscribe.py)."""
    secret = request.app[SETTINGS].notify_token
    if not secret or _presented(request, secret):
        return
    if not secret_is_valid(secret, _given(request), request.app[STORE].meta):
        raise web.HTTPUnauthorized(reason="a valid bearer token or X-Engagement-Secret is needed")


def may_read(request: web.Request) -> bool:
    """Whether the request carries the read credential (the notify one when none is set).

    With neither set, reading is open: ``serve`` then listens on loopback only (app.py).
    """
    settings = request.app[SETTINGS]
    secret = settings.read_token or settings.notify_token
    return not secret or _presented(request, secret)


def check_read(request: web.Request) -> None:
    if not may_read(request):
        raise web.HTTPUnauthorized(reason="the read credential is needed (bearer token)")


def _presented(request: web.Request, secret: str) -> bool:
    return hmac.compare_digest(_given(request).encode(), secret.encode())


def _given(request: web.Request) -> str:
    return request.headers.get("X-Engagement-Secret") or request.headers.get(
        "Authorization", "").removeprefix("Bearer ").strip()


def outcome(status: int, code: str, text: str, where: str = "",
            severity: str = "error") -> web.Response:
    """An OperationOutcome response with one issue."""
    issue: dict[str, object] = {"severity": severity, "code": code, "diagnostics": text}
    if where:
        issue["expression"] = [where]
    body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]})
    return web.Response(body=body, status=status, content_type="application/fhir+json")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place a failed request becomes an answer."""
    try:
        return await handler(request)
    except NotificationError as error:
        return outcome(HTTPStatus.BAD_REQUEST, "invalid", error.reason, error.where)
    except StoreError:
        response = outcome(HTTPStatus.SERVICE_UNAVAILABLE, "transient",
                           "the adapter cannot keep input now: send again")
        response.headers["Retry-After"] = "5"
        return response
    except web.HTTPException as error:
        if error.status < HTTPStatus.BAD_REQUEST:
            raise
        code = _ISSUE_CODES.get(HTTPStatus(error.status), "invalid")
        text = (error.text or "").removeprefix(f"{error.status}: ")
        default = HTTPStatus(error.status).phrase
        return outcome(error.status, code, error.reason if text == default else text)
