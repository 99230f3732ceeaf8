"""The exception tree: every error the adapter raises on purpose.

    EngagementError
    ├── ConfigError            start-up: a settings, mapping or rules file is wrong (names file + key)
    │   ├── MappingError
    │   ├── RulesError
    │   └── LetterTemplateError  a WNB letter template (mappings/letters/)
    ├── InputError             bad data from outside; the input is kept in the dead-letter store
    │   ├── RecordError        one FHIR record cannot be read (names file, position and JSON path)
    │   │   ├── CalendarRangeError  an event's due date falls outside the years the calendar knows
    │   │   └── IdentityConflictError  a record would join two children (two NHS numbers): not merged
    │   ├── MessageError       one HL7 v2 message cannot be parsed or mapped (names segment/field)
    │   ├── FramingError       an MLLP block is malformed or too large
    │   ├── NotificationError  a pushed FHIR body cannot be used (-> 400 OperationOutcome)
    │   └── UnreadableError    one item could not be read or processed for a reason nobody foresaw
    ├── StoreError             the durable store cannot be used
    │   └── StoreLockedError   another process is writing the store (one writer per store)
    ├── DeliveryError               writing to the FHIR server failed
    │   ├── RetryableDeliveryError  timeouts, connection errors, 408/429/5xx: try again (retry_after)
    │   ├── AuthRequiredError       401/403: re-authenticate, then try again
    │   └── PermanentDeliveryError  any other 4xx: the batch goes to the dead-letter store
    │       ├── ConflictError       409/412: changed meanwhile; re-read and rebuild, then dead
    │       └── BadAnswerError      a 2xx answer that is not what FHIR promises (not a Bundle)
    └── ReportError            a report cannot be made as asked (unknown patient, no store, bad dates)

Errors become answers in exactly one place per entry point: the CLI (message + exit code), the
HTTP middleware (OperationOutcome) and the v2 inbox (the ACK for MLLP). Foreign exceptions are
translated at the boundary with ``raise ... from exc`` so the cause survives for debugging.
"""

from __future__ import annotations

__all__ = [
    "AuthRequiredError",
    "BadAnswerError",
    "CalendarRangeError",
    "ConfigError",
    "ConflictError",
    "DeliveryError",
    "EngagementError",
    "FramingError",
    "IdentityConflictError",
    "InputError",
    "LetterTemplateError",
    "MappingError",
    "MessageError",
    "NotificationError",
    "PermanentDeliveryError",
    "RecordError",
    "ReportError",
    "RetryableDeliveryError",
    "RulesError",
    "StoreError",
    "StoreLockedError",
    "UnreadableError",
]


class EngagementError(Exception):
    """Base of every error raised on purpose by fhir_engagement."""


class ConfigError(EngagementError):
    """A configuration file is wrong; the program must not start with it."""

    def __init__(self, file: str, where: str, reason: str) -> None:
        self.file, self.where, self.reason = file, where, reason
        at = f" at {where}" if where else ""
        super().__init__(f"{file}{at}: {reason}")


class MappingError(ConfigError):
    """A file under mappings/ (signals, code sets, local codes) is wrong."""


class RulesError(ConfigError):
    """The rules table or calendar is wrong."""


class LetterTemplateError(ConfigError):
    """A letter template under mappings/letters/ is wrong (its TOML, or a template that fails)."""


class InputError(EngagementError):
    """Data from outside cannot be used; ``where`` says which file/position/path."""

    def __init__(self, where: str, reason: str, raw: bytes = b"") -> None:
        self.where, self.reason, self.raw = where, reason, raw
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled by replay's reading workers: the default would call __init__ with the message
        # alone. Every subclass's attributes (code, ...) are in __dict__.
        return _rebuilt, (type(self), self.args, self.__dict__)


def _rebuilt(cls: type[InputError], args: tuple[object, ...],
             state: dict[str, object]) -> InputError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class RecordError(InputError):
    """One FHIR record (a resource, an NDJSON line, a Bundle entry) is unreadable."""


class CalendarRangeError(RecordError):
    """An event's working-day due date falls outside the years whose bank holidays are known.

    A RecordError so that the event is dead-lettered for a person: a date counted there would
    silently ignore bank holidays.
    """


class IdentityConflictError(RecordError):
    """A Patient record that names two NHS numbers, or a local record already known under
    another NHS number: kept aside for a person, never merged (rules.md s.7)."""


class MessageError(InputError):
    """One HL7 v2 message cannot be parsed or mapped; answered with an AE ACK.

    ``code`` is the HL7 table 0357 condition the ACK's ERR segment reports, set where the error
    is raised because only there is it known what kind of fault it was: 100 segment sequence
    error (also a required segment missing), 101 required field missing, 102 data type error,
    103 table value not found, 207 application internal error (the default: nothing better known).
    """

    def __init__(self, where: str, reason: str, raw: bytes = b"", *, code: int = 207) -> None:
        super().__init__(where, reason, raw)
        self.code = code


class FramingError(InputError):
    """An MLLP frame is malformed or larger than the configured limit."""


class NotificationError(InputError):
    """A FHIR notification or pushed resource cannot be used; answered 400 with an OperationOutcome."""


class UnreadableError(InputError):
    """One item could not be read or processed for a reason nobody foresaw (a bug, or input no
    reader expected); it is kept in the dead-letter store and the items after it go on."""


class DeliveryError(EngagementError):
    """Writing to the FHIR server failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(f"HTTP {status}: {reason}" if status else reason)


class RetryableDeliveryError(DeliveryError):
    """Worth trying again: no answer, 408, 429 or 5xx. ``retry_after`` is the server's wish (s)."""

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(status, reason)
        self.retry_after = retry_after


class AuthRequiredError(DeliveryError):
    """401/403: the credential was refused; get a new token and try once more."""


class PermanentDeliveryError(DeliveryError):
    """A 4xx the same request will always get: kept in the dead-letter store for a person."""


class ConflictError(PermanentDeliveryError):
    """409/412: the server holds a newer version than the request was built on (a stale If-Match).

    The same request always gets it again, so it is permanent as sent; the outbox re-reads what
    the server holds and rebuilds the request a few times before it gives up on the batch.
    """


class BadAnswerError(PermanentDeliveryError):
    """The server said yes (2xx) but its body is not what FHIR promises: a search answer that is
    not a Bundle, entries that are not objects. ``status`` is the 2xx; ``reason`` says what was
    wrong and where, never the body (it may hold a child's data)."""


class StoreError(EngagementError):
    """The durable store failed; callers must not acknowledge input they could not keep."""


class StoreLockedError(StoreError):
    """Another process holds the store: a second writer would lower escalations."""


class ReportError(EngagementError):
    """A report cannot be made as asked: the CLI prints the reason and exits 2.

    Its message never repeats the patient identifier it was given: it goes to terminals and logs.
    """
