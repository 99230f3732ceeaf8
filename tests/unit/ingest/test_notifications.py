"""Classifying pushes (ingest/notifications.py) on the real notification examples in shared/realdata."""

from __future__ import annotations

import json

import pytest

from fhir_engagement.errors import NotificationError
from fhir_engagement.ingest.notifications import classify
from tests.conftest import REALDATA

SUBS = REALDATA / "subscriptions"


def _body(path: str) -> bytes:
    return (SUBS / path).read_bytes()


@pytest.mark.parametrize(
    ("path", "kind", "subscription"),
    [
        ("inferno-subscriptions-test-kit/handshake_bundle_example.json", "handshake",
         "https://fhirserver.org/fhir/Subscription/123"),
        ("inferno-subscriptions-test-kit/heartbeat_bundle_example.json", "heartbeat",
         "https://fhirserver.org/fhir/Subscription/123"),
        ("fhir-candle/r4b/Bundle-notification-handshake.json", "handshake", None),
        ("fhir-candle/r5/Bundle-notification-handshake.json", "handshake",
         "https://subscriptions.argo.run/fhir/r5/Subscription/e1f461cb-f41c-470e-aa75-d5223b2c943a"),
    ],
)
def test_backport_r4b_and_r5_handshakes_and_heartbeats(path: str, kind: str,
                                                       subscription: str | None) -> None:
    notice = classify(_body(path))
    assert notice.kind == kind
    if subscription:
        assert notice.subscription == subscription


def test_full_resource_notification_includes_its_focus() -> None:
    notice = classify(_body("inferno-subscriptions-test-kit/full_resource_notification_bundle_example.json"))
    assert notice.kind == "event-notification"
    assert notice.event_numbers == (1,)
    assert notice.focus == ()  # the Encounter is in the Bundle: nothing to fetch
    # the event number, what the event is about, and the body's digest
    subscription, _, rest = notice.dedupe.partition("#")
    number, focus, digest = rest.split("|")
    assert (subscription, number) == ("https://fhirserver.org/fhir/Subscription/123", "1")
    assert focus == "Encounter/86009987-eabe-42bf-8c02-b112b18cb616"
    assert len(digest) == 32


def test_the_same_event_number_about_another_resource_is_not_a_duplicate() -> None:
    """A forged notification, or a server whose numbering restarted, must not take an earlier
    event's dedupe key: the inbox would drop a real no-show as its duplicate."""
    raw = _body("inferno-subscriptions-test-kit/id_only_notification_bundle_example.json")
    again = classify(raw)
    other = classify(raw.replace(b"86009987-eabe-42bf-8c02-b112b18cb616", b"another-encounter"))
    assert classify(raw).dedupe == again.dedupe  # a true re-send is still one event
    assert other.event_numbers == again.event_numbers
    assert other.dedupe != again.dedupe


def test_id_only_notification_names_what_to_fetch() -> None:
    notice = classify(_body("inferno-subscriptions-test-kit/id_only_notification_bundle_example.json"))
    assert notice.kind == "event-notification"
    assert notice.focus == ("https://fhirserver.org/fhir/Encounter/86009987-eabe-42bf-8c02-b112b18cb616",)


def test_r4_candle_notification_with_subscription_as_a_string() -> None:
    """fhir-candle sends the subscription parameter as valueString (non-conformant, tolerated)."""
    notice = classify(_body("fhir-candle/r4/Bundle-notification-id.json"))
    assert notice.subscription
    assert notice.kind == "event-notification"


def test_rest_hook_forms() -> None:
    assert classify(b"").kind == "poll"
    appointment = {"resourceType": "Appointment", "id": "a1", "status": "noshow",
                   "meta": {"versionId": "3"}}
    notice = classify(json.dumps(appointment).encode(), "Appointment", "a1")
    assert notice.kind == "resource"
    assert notice.dedupe.startswith("Appointment/a1/3|")  # and the body's digest


@pytest.mark.parametrize(
    ("body", "path", "where"),
    [(b"{not json", (None, None), "body line 1 column 2"),
     (b"[1, 2]", (None, None), "body"),
     (b'{"resourceType": "Patient", "id": "p1"}', ("Appointment", "p1"), "resourceType"),
     (b'{"resourceType": "Appointment", "id": "x"}', ("Appointment", "y"), "id"),
     (b"", ("Appointment", "a1"), "Appointment/a1")],
)
def test_bad_pushes_say_what_is_wrong_and_where(body: bytes, path: tuple[str | None, str | None],
                                                where: str) -> None:
    with pytest.raises(NotificationError) as caught:
        classify(body, *path)
    assert caught.value.where == where
