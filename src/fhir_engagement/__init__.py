"""fhir_engagement: apply the HSCP Child and Family Engagement Guidance to FHIR and HL7 v2 events."""

from __future__ import annotations

from fhir_engagement.errors import (
    AuthRequiredError,
    BadAnswerError,
    CalendarRangeError,
    ConfigError,
    ConflictError,
    DeliveryError,
    EngagementError,
    FramingError,
    IdentityConflictError,
    InputError,
    LetterTemplateError,
    MappingError,
    MessageError,
    NotificationError,
    PermanentDeliveryError,
    RecordError,
    ReportError,
    RetryableDeliveryError,
    RulesError,
    StoreError,
    StoreLockedError,
    UnreadableError,
)

__version__ = "0.1.0"

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
    "__version__",
]
