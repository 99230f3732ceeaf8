"""Property: every input parser answers records or a named InputError, within a second, for any input.

Each parser gets a few hundred generated cases per run (the whole folder stays well under a
minute); ``bench/fuzz_bench.py`` runs the same properties for 100,000 cases each. Inputs are
realistic documents and messages mutated the ways feeds and hostile clients do, and arbitrary
values and bytes. A property fails on any exception other than an InputError subclass, on a
record unsafe for later stages, and on a case slower than the deadline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import properties as p

FUZZ = settings(max_examples=250, deadline=timedelta(seconds=1), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_SCALARS = (st.none() | st.booleans() | st.integers(-(2**64), 2**64)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
            | st.sampled_from(p.HOSTILE_VALUES))
_KEYS = st.sampled_from(["resourceType", "id", "entry", "resource", "status", "start", "coding",
                         "code", "concept", "participant", "actor", "reference", "subject"]) | st.text(
    max_size=8)
JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(_KEYS, inner, max_size=5), max_leaves=30)


def _resources(value: Any) -> Any:
    return {"resourceType": "Appointment", "id": "a", "status": "noshow", **(
        value if isinstance(value, dict) else {"start": value})}


@FUZZ
@given(JSON)
def test_reader_on_any_json_value(value: Any) -> None:
    p.check_reader(value)
    p.check_reader(_resources(value))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_reader_on_mutated_real_documents(rng: Any) -> None:
    p.check_reader(p.mutate_json(rng, rng.choice(p.fhir_seeds())))


@FUZZ
@given(st.randoms(use_true_random=False))
def test_v2_parse_and_mapping_on_mutated_real_messages(rng: Any) -> None:
    p.check_v2(p.mutate_v2(rng, rng.choice(p.v2_seeds())))


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([b"", b"MSH|^~\\&|", b"MSH", b"\xef\xbb\xbfMSH|"]))
def test_v2_on_arbitrary_bytes(data: bytes, prefix: bytes) -> None:
    p.check_split(prefix + data)
    p.check_v2(prefix + data)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_classify_on_mutated_real_notifications(rng: Any) -> None:
    p.check_classify(p.json_body(p.mutate_json(rng, rng.choice(p.notification_seeds()))))


@FUZZ
@given(JSON)
def test_classify_on_any_json_value(value: Any) -> None:
    p.check_classify(p.json_body(value))
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "SubscriptionStatus", "type": "event-notification",
        "subscription": {"reference": "Subscription/1"}, "eventsSinceSubscriptionStart": value,
        "notificationEvent": [{"eventNumber": value}]}}]}
    p.check_classify(p.json_body(bundle))


@FUZZ
@given(st.binary(max_size=400))
def test_classify_on_arbitrary_bytes(body: bytes) -> None:
    p.check_classify(body)


@FUZZ
@given(st.randoms(use_true_random=False))
def test_mllp_framing_on_generated_streams(rng: Any) -> None:
    p.check_mllp(p.mllp_stream(rng))


@FUZZ
@given(st.binary(max_size=3 * p.MAX_FRAME))
def test_mllp_framing_on_arbitrary_bytes(stream: bytes) -> None:
    p.check_mllp(stream)


@FUZZ
@given(st.lists(st.binary(max_size=200).filter(lambda b: b"\x0b" not in b and b"\x1c" not in b),
                max_size=5), st.binary(max_size=20).filter(lambda b: b"\x0b" not in b))
def test_mllp_frames_between_junk_come_out_whole_and_in_order(payloads: list[bytes],
                                                             junk: bytes) -> None:
    stream = b"".join(junk + p.START + payload + p.END for payload in payloads)
    assert p.frames_of(stream) == payloads


def test_every_seed_is_read_without_error_before_mutation() -> None:
    """The seeds are good input, so what the mutations break is what the properties test."""
    outcomes = {p.check_reader(doc) for doc in p.fhir_seeds()}
    assert "records" in outcomes
    assert {p.check_v2(raw) for raw in p.v2_seeds()} >= {"records"}
    kinds = {p.check_classify(orjson.dumps(doc)) for doc in p.notification_seeds()}
    assert {"handshake", "event-notification"} <= kinds
