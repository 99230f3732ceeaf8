"""How HTTP answers become named errors (fhir_client._answer): the outbox's retry decisions."""

from __future__ import annotations

import orjson
import pytest

from fhir_engagement.errors import (
    AuthRequiredError,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from fhir_engagement.fhirserver.client import _answer, _retry_after, outcome_text

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
