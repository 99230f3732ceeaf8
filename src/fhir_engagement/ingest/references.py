"""References and identifiers as real data writes them: ``Type/id`` keys, NHS numbers, depth.

A reference arrives relative, absolute, versioned, as a ``urn:uuid`` of its Bundle, contained
(``#id``), conditional (``Patient?identifier=...``) or as an identifier only; everything that
reads input names a resource by the one key this module gives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from fhir_engagement.ingest.sources import Sources, base_and_path
from fhir_engagement.model import HOME, scoped

__all__ = [
    "MAX_DEPTH",
    "MAX_IDENTIFIERS",
    "NHS_NUMBER_SYSTEM",
    "ODS_SYSTEM",
    "conditional_key",
    "identifier_key",
    "nhs_number_is_valid",
    "reference_key",
    "resource_path",
    "too_deep",
]

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
# Real FHIR, Bundles of Bundles with contained resources and nested extensions included, stays
# under 30 levels. 100 is far from that and from what orjson will write back (255) and Python's
# recursion limit (1000): deeper input is hostile. Checked whole where a body arrives (a push);
# the replay hot path bounds only what it recurses into, as a full walk would double its cost.
MAX_DEPTH = 100
_DIGITS = frozenset("0123456789")
# A patient's identifiers: NHS number, an MRN or two per trust, a few old ones. A record with more
# is not one child's (a fuzzed or broken feed: 32,000 PID-3 repetitions were seen); each alias is
# a store row and an index entry, so such a record is refused, not kept.
MAX_IDENTIFIERS = 100


def nhs_number_is_valid(value: str) -> bool:
    """Ten digits whose tenth is the modulus-11 check digit of the first nine."""
    # Only ASCII 0-9: str.isdigit() is True for '²', which int() then refuses.
    if len(value) != 10 or not _DIGITS.issuperset(value):
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(value[9])


def reference_key(
    ref: Any, aliases: Mapping[str, str], owner: str = "", namespace: str = HOME,
    sources: Sources | None = None,
) -> str | None:
    """A stable key for a Reference in any of its real-world forms, or None for display-only.

    A relative URL is ``Type/id`` in the referring resource's ``namespace``; an absolute one is in
    its server's (``sources``); ``urn:uuid`` resolves through the Bundle's fullUrls; ``#id`` is a
    contained resource of ``owner``; an identifier-only or conditional reference becomes
    ``nhs:NNN`` or ``id:system|value`` (an identifier means the same at every source).
    """
    if not isinstance(ref, dict):
        return None
    text = ref.get("reference")
    if isinstance(text, str) and text:
        head, slash, tail = text.partition("/")
        if (slash and tail and "/" not in tail and "?" not in tail and head
                and head[0] != "#" and "?" not in head and not head.startswith("urn:")
                and "_history" not in (head, tail)):
            return scoped(text, namespace)  # the usual relative Type/id, in one step
        return _key_of_reference_text(text, aliases, owner, namespace, sources)
    ident = ref.get("identifier")
    if isinstance(ident, dict):
        return identifier_key(ident)
    return None


def _key_of_reference_text(
    text: str, aliases: Mapping[str, str], owner: str, namespace: str, sources: Sources | None
) -> str:
    if text.startswith("#"):
        return f"{owner}{text}"
    if text.startswith("urn:"):
        return aliases.get(text, text)
    if "?" in text:  # conditional reference: Patient?identifier=system|value
        return conditional_key(text) or text
    absolute = base_and_path(text)
    if absolute is not None:
        base, path = absolute
        return scoped(path, (sources or Sources()).for_server(base))
    return scoped(resource_path(text), namespace)


def conditional_key(text: str) -> str | None:
    """``Patient?identifier=system|value`` (a conditional reference or request.url) -> its key."""
    query = text.split("?", 1)[1] if "?" in text else ""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "identifier" and "|" in value:
            system, _, code = unquote(value).partition("|")
            return identifier_key({"system": system, "value": code})
    return None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a parsed JSON value nests objects/lists more than ``limit`` levels deep.

    Level by level, not recursive, so checking a hostile value cannot itself overflow the stack.
    """
    level = [value] if type(value) in (dict, list) else []
    for _ in range(limit):
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below.extend(c for c in children if type(c) in (dict, list))
        if not below:
            return False
        level = below
    return True


def resource_path(text: str) -> str:
    """``https://x/fhir/Appointment/1/_history/2`` (or relative) -> ``Appointment/1``."""
    head, slash, tail = text.partition("/")
    if slash and head and tail and "/" not in tail and "_history" not in (head, tail):
        return text  # the usual Type/id, without splitting it into a list
    parts = [p for p in text.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else text


def identifier_key(ident: Mapping[str, Any]) -> str | None:
    """``nhs:NNN`` for an NHS number, ``id:system|value`` for any other; None without a value."""
    system, value = ident.get("system"), ident.get("value")
    if not isinstance(value, str) or not value:
        return None
    if system == NHS_NUMBER_SYSTEM:
        return f"nhs:{value.replace(' ', '')}"
    return f"id:{system}|{value}" if isinstance(system, str) else None
