"""How HTTP answers become named errors (fhir_client._answer): the outbox's retry decisions;
and how a search reads every page of an answer, and only from its own server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web

from fhir_engagement.errors import (
    AuthRequiredError,
    BadAnswerError,
    ConflictError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from fhir_engagement.fhirserver.client import FhirClient, _answer, _retry_after, outcome_text
from tests.conftest import serve_app

OUTCOME = orjson.dumps({"resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "invalid",
                                   "diagnostics": "Task.status: bad code"}]})


def test_2xx_returns_the_body() -> None:
    assert _answer(200, {}, b'{"resourceType": "Bundle"}') == {"resourceType": "Bundle"}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_timeouts_throttling_and_server_errors_are_retryable(status: int) -> None:
    with pytest.raises(RetryableDeliveryError) as caught:
        _answer(status, {"Retry-After": "7"}, OUTCOME)
    assert caught.value.retry_after == 7.0
    assert caught.value.reason == "Task.status: bad code"


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_ask_for_a_new_token(status: int) -> None:
    with pytest.raises(AuthRequiredError):
        _answer(status, {}, b"")


@pytest.mark.parametrize("status", [400, 404, 409, 412, 422])
def test_other_4xx_are_permanent_and_carry_the_outcome(status: int) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        _answer(status, {}, OUTCOME)
    assert caught.value.status == status
    assert "Task.status: bad code" in str(caught.value)


def test_retry_after_as_seconds_date_or_garbage() -> None:
    assert _retry_after("12") == 12.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    assert _retry_after("soon") is None
    assert _retry_after(None) is None


def test_outcome_text_only_reads_operation_outcomes() -> None:
    assert outcome_text({"resourceType": "Bundle"}) == ""
    assert outcome_text(orjson.loads(OUTCOME)) == "Task.status: bad code"


# ------------------------------------------------------------ conflicts and malformed answers


@pytest.mark.parametrize("status", [409, 412])
def test_409_and_412_are_a_typed_conflict(status: int) -> None:
    """The outbox re-reads the Flag on a ConflictError: it never matches the text of a reason."""
    conflict = orjson.dumps({"resourceType": "OperationOutcome",
                             "issue": [{"severity": "error", "code": "conflict"}]})
    with pytest.raises(ConflictError) as caught:
        _answer(status, {}, conflict)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [400, 404, 422])
def test_other_4xx_are_not_conflicts(status: int) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        _answer(status, {}, OUTCOME)
    assert not isinstance(caught.value, ConflictError)


MALFORMED = {
    "entries but no Bundle": b'{"entry": [1]}',
    "an entry that is a number": b'{"resourceType": "Bundle", "entry": [1]}',
    "entry not a list": b'{"resourceType": "Bundle", "entry": {"resource": {}}}',
    "a resource that is a list": b'{"resourceType": "Bundle", "entry": [{"resource": [1]}]}',
    "a link that is a string": b'{"resourceType": "Bundle", "link": ["next"]}',
    "another resource": b'{"resourceType": "Patient", "id": "p1"}',
    "a JSON array": b"[1, 2]",
    "not JSON": b"<html>Gateway says hello</html>",
    "nothing": b"",
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_bundle_is_a_bad_answer_not_a_type_error(payload: bytes) -> None:
    with pytest.raises(BadAnswerError) as caught:
        _answer(200, {}, payload, expect_bundle=True)
    assert caught.value.status == 200
    assert "hello" not in str(caught.value)  # the body is never repeated (it may hold a child)


def test_a_well_formed_bundle_passes() -> None:
    body = b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Flag"}}, {}]}'
    assert _answer(200, {}, body, expect_bundle=True)["entry"][1] == {}


# ------------------------------------------------------------ paging, on a real server


@dataclass
class PagedServer:
    """A FHIR search endpoint on 127.0.0.1 serving PAGES pages of two Appointments each."""

    base: str = ""
    asked: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    next_link: Callable[[str, int], str] | None = None  # page -> next url; default: same server
    body: bytes | None = None  # answer every search with this instead


PAGES = 3


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> AsyncIterator[str]:
    """A real aiohttp server on a free loopback port; yields its /fhir base URL."""
    app = web.Application()
    app.router.add_route("*", "/fhir/{tail:.*}", handler)
    async with serve_app(app) as served:
        yield f"{served.url}/fhir"


@pytest.fixture
async def paged() -> AsyncIterator[PagedServer]:
    server = PagedServer()

    async def search(request: web.Request) -> web.Response:
        server.asked.append(request.path_qs)
        server.tokens.append(request.headers.get("Authorization", ""))
        if server.body is not None:
            return web.Response(body=server.body, content_type="application/fhir+json")
        page = int(request.query.get("page", "1"))
        entries = [{"resource": {"resourceType": "Appointment", "id": f"a{page}-{n}"}}
                   for n in (1, 2)]
        bundle: dict[str, object] = {"resourceType": "Bundle", "type": "searchset",
                                     "entry": entries, "link": []}
        if page < PAGES:
            default = f"{server.base}/Appointment?_count=2&page={page + 1}"
            url = server.next_link(server.base, page) if server.next_link else default
            bundle["link"] = [{"relation": "self", "url": "x"}, {"relation": "next", "url": url}]
        return web.json_response(bundle)

    async with serving(search) as base:
        server.base = base
        yield server


async def _token(_: bool) -> str:
    return "secret-token"


def _ids(found: list[dict[str, object]]) -> list[object]:
    return [r["id"] for r in found]


async def test_a_search_follows_next_links_to_the_last_page(paged: PagedServer) -> None:
    async with aiohttp.ClientSession() as session:
        client = FhirClient(paged.base, session, _token)
        found = await client.search("Appointment", {"_count": "2", "status": "noshow"})
    assert _ids(found) == ["a1-1", "a1-2", "a2-1", "a2-2", "a3-1", "a3-2"]
    assert paged.asked[0] == "/fhir/Appointment?_count=2&status=noshow"
    assert paged.asked[1:] == ["/fhir/Appointment?_count=2&page=2",
                               "/fhir/Appointment?_count=2&page=3"]
    assert paged.tokens == ["Bearer secret-token"] * PAGES
    assert client.pages_capped == 0


async def test_a_relative_next_link_is_followed_on_the_same_server(paged: PagedServer) -> None:
    paged.next_link = lambda _, page: f"/fhir/Appointment?_count=2&page={page + 1}"
    async with aiohttp.ClientSession() as session:
        found = await FhirClient(paged.base, session).search("Appointment", {})
    assert len(found) == 2 * PAGES


async def test_the_page_cap_stops_counts_and_warns_without_identifiers(
    paged: PagedServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with aiohttp.ClientSession() as session:
        client = FhirClient(paged.base, session, max_pages=2)
        with caplog.at_level(logging.WARNING, logger="fhir_engagement.fhirserver.client"):
            found = await client.search("Appointment", {"patient": "9434765919"})
    assert _ids(found) == ["a1-1", "a1-2", "a2-1", "a2-2"]
    assert len(paged.asked) == 2
    assert client.pages_capped == 1
    (record,) = caplog.records
    assert "cap of 2 pages" in record.getMessage()
    assert "9434765919" not in record.getMessage()
    assert "a2-" not in record.getMessage()


async def test_a_next_link_to_another_host_is_refused_and_never_sent_the_token(
    paged: PagedServer,
) -> None:
    """The bearer token goes with every request: a next link elsewhere would hand it over."""
    elsewhere: list[str] = []

    async def foreign(request: web.Request) -> web.Response:
        elsewhere.append(request.headers.get("Authorization", ""))
        return web.json_response({"resourceType": "Bundle", "type": "searchset"})

    async with serving(foreign) as other, aiohttp.ClientSession() as session:
        paged.next_link = lambda _, page: f"{other}/Appointment?page={page + 1}"
        with pytest.raises(BadAnswerError) as caught:
            await FhirClient(paged.base, session, _token).search("Appointment", {})
    assert elsewhere == []
    assert "not followed" in str(caught.value)
    assert "page=" not in str(caught.value)  # only the origin is named, never the query


async def test_a_next_link_with_another_scheme_is_refused(paged: PagedServer) -> None:
    paged.next_link = lambda base, page: base.replace("http://", "https://") + "/Appointment"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BadAnswerError):
            await FhirClient(paged.base, session).search("Appointment", {})


async def test_a_malformed_search_answer_is_a_named_error(paged: PagedServer) -> None:
    paged.body = b'{"entry": [1]}'
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BadAnswerError):
            await FhirClient(paged.base, session).search("Flag", {})
