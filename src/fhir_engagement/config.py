"""Settings and the data-file plumbing every loader shares.

One frozen ``Settings`` is built at start-up (from a TOML file, then ``FHIR_ENGAGEMENT_*``
environment variables) and passed explicitly; there is no global configuration. ``load_toml``
turns a syntax or schema error into a ConfigError that names the file, the key path and the line,
so a trust editing a mapping sees exactly what to fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fhir_engagement.errors import ConfigError
from fhir_engagement.model import SERVICE_ELEMENTS

__all__ = ["Settings", "SourceConfig", "StatusSourceConfig", "default_mappings_dir", "load_model",
           "load_toml", "locate"]

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=ConfigError)

_ENV_PREFIX = "FHIR_ENGAGEMENT_"


def default_mappings_dir() -> Path:
    """The mappings shipped with the package (wheel) or, in a source checkout, the repo's own."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "mappings", here.parents[1] / "mappings"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(str(here), "", "no mappings/ folder found next to the package")


def default_codesystems_dir() -> Path:
    """The CodeSystem JSON files the adapter publishes (signal, concern, action)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / "codesystems", here.parents[1] / "codesystems"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(str(here), "", "no codesystems/ folder found next to the package")


class SourceConfig(BaseModel):
    """One system records come from (rules.md s.7): a trust's FHIR server, its PAS feed, a folder.

    Its ``name`` is the namespace of the ids it gives (``Patient/1`` at two sources is two
    children). ``folders``, ``servers`` and ``facilities`` say which input belongs to it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    ods: str | None = Field(default=None, pattern=r"^[A-Z0-9]{3,6}$")  # ODS organisation code
    care: Literal["primary", "secondary"] = "secondary"
    # trailing folder names that hold this source's files ("region/trust-a")
    folders: tuple[str, ...] = ()
    # FHIR base URLs: an entry's fullUrl base, meta.source or the subscribed server
    servers: tuple[str, ...] = ()
    # HL7 v2 MSH-4.1 sending facilities, or "MSH-3.1^MSH-4.1" for one application of one
    facilities: tuple[str, ...] = ()
    # the source's own system for its appointment and visit ids (Task.focus by identifier)
    identifier_system: str | None = None
    # the system of the patient ids its HL7 v2 feed sends in PID-3 (a local MRN)
    patient_identifier_system: str | None = None
    # which element names the service, per resource type, where this source differs from the
    # mapping files' ``service`` lists (rules.md s.7): {Appointment = ["specialty"]}
    service: dict[str, tuple[str, ...]] = {}

    @field_validator("service")
    @classmethod
    def _known_elements(cls, service: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for rtype, order in service.items():
            allowed = SERVICE_ELEMENTS.get(rtype)
            if allowed is None:
                raise ValueError(f"service.{rtype}: one of {', '.join(sorted(SERVICE_ELEMENTS))}")
            unknown = [e for e in order if e not in allowed]
            if unknown:
                raise ValueError(f"service.{rtype}: {unknown[0]!r} is not one of "
                                 f"{', '.join(sorted(allowed))} (a service category never is)")
        return service


class StatusSourceConfig(BaseModel):
    """A national status service to ask about a child (issue 12): CP-IS's FHIR R4 API or its shape.

    Asked ``GET {base}/CareTeam?patient:identifier=https://fhir.nhs.uk/Id/nhs-number|N``; its
    answer is cached in the store for ``ttl`` seconds. ``headers`` are sent on every request
    (CP-IS asks for ``TraceID`` and similar); a bearer token only from the environment variable
    named by ``token_env``, or SMART Backend Services with the ``auth_*`` keys, as for write-back.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="cp-is", min_length=1, max_length=64,
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    base: str = Field(min_length=1)
    headers: dict[str, str] = {}
    timeout: float = Field(default=3.0, gt=0)  # seconds; past it the decision goes ahead
    ttl: float = Field(default=3600.0, gt=0)  # seconds an answer is reused
    token_env: str | None = None
    auth_token_url: str | None = None
    auth_client_id: str | None = None
    auth_key_file: Path | None = None
    auth_kid: str | None = None
    auth_alg: str = "RS384"


class Settings(BaseModel):
    """Everything the adapter is told at start-up; immutable once built."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mappings_dir: Path = default_mappings_dir()
    store: str = "fhir-engagement.sqlite3"
    source: str = ""
    # replay: processes that read the input (None: 2 where there are 2 cores; 1: read in-process)
    replay_workers: int | None = Field(default=None, ge=1)
    # the region's sources (rules.md s.7), each a namespace for the ids it gives
    sources: tuple[SourceConfig, ...] = ()
    # national status services asked about each child in live mode (CP-IS; live/status_sources.py)
    status_sources: tuple[StatusSourceConfig, ...] = ()
    # serve: the HTTP side (health, dashboard) and the MLLP listener for HL7 v2 feeds
    host: str = "127.0.0.1"
    port: int = 8080
    mllp_host: str = "127.0.0.1"
    mllp_port: int | None = None
    mllp_max_frame: int = 1_048_576
    mllp_idle_timeout: float = 300.0
    # write-back: the FHIR server's base URL; its bearer token only from the environment
    # (FHIR_ENGAGEMENT_FHIR_TOKEN), never from a file that may be copied around
    fhir_base: str | None = None
    fhir_token: str | None = None
    deliver_timeout: float = 120.0
    # notifications pushed to serve: the credential senders must present (environment only:
    # FHIR_ENGAGEMENT_NOTIFY_TOKEN), the largest body taken (413 above it)
    notify_token: str | None = None
    # the credential for /dashboard, /metrics and /readyz's details (FHIR_ENGAGEMENT_READ_TOKEN);
    # without one, those take the notify credential; with neither, they are open (loopback only)
    read_token: str | None = None
    max_body: int = 10 * 1024 * 1024
    # serve's HTTP limits (live/http.py): slow or many clients must not starve the listener
    header_timeout: float = 10.0  # seconds for a new connection's request headers
    body_timeout: float = 30.0  # seconds to receive a pushed body
    keepalive_timeout: float = 15.0  # idle seconds before a kept-alive connection is closed
    max_connections: int = 512
    # SMART Backend Services / NHS signed-JWT client credentials (instead of fhir_token)
    auth_token_url: str | None = None
    auth_client_id: str | None = None
    auth_key_file: Path | None = None
    auth_kid: str | None = None
    auth_alg: str = "RS384"
    # topic-based (backport) subscriptions to make, where the server offers these topics
    topics: tuple[str, ...] = ()
    # the heartbeat a topic-based subscription asks the server for, in seconds; a subscription
    # silent for 3 periods (fhirserver/subscribe.py OVERDUE_PERIODS) is "overdue"
    heartbeat_period: int = Field(default=300, gt=0)
    shutdown_grace: float = 20.0  # seconds serve may take to finish acknowledged work on stop
    # the inbox workers: an item that failed this many times is quarantined (a dead letter), so
    # the queue always moves; /readyz says "not ready" while the oldest item waits longer
    inbox_max_attempts: int = 3
    inbox_max_age: float = 300.0
    dashboard_cache_seconds: float = 30.0  # /dashboard is rebuilt (off the event loop) at most this often
    # security (SECURITY.md): who a person reading identifiable data is recorded as (else the OS
    # user); the audit HMAC key, from the environment (FHIR_ENGAGEMENT_AUDIT_KEY, hex) or a key
    # file kept apart from the store (default: beside it, in ``<store>.keys/``, mode 0700/0600)
    operator: str | None = None
    audit_key: str | None = Field(default=None, pattern=r"^([0-9a-fA-F]{2}){16,64}$", repr=False)
    audit_key_file: Path | None = None
    # MLLP over TLS: the listener's certificate and key; with a client CA, mutual TLS (a client
    # certificate signed by it is required)
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_client_ca: Path | None = None
    # how long a rotated subscription secret is still accepted (seconds), so in-flight
    # notifications signed with the old one are not lost
    subscription_secret_grace: float = 3600.0
    # write-back: how long (seconds) a target server's Patient id found by NHS-number search is
    # reused before the server is asked again (live/patients.py; "none found" is kept 10 min at most)
    server_patient_ttl: float = Field(default=86400.0, gt=0)
    # several serve processes on one PostgreSQL store (docs/replicas.md): how this one is named
    # in /metrics and /readyz (default hostname:pid), and how often a standby asks for the lease
    replica_name: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9._:-]*$")
    lease_retry: float = Field(default=0.5, gt=0)

    @field_validator("sources")
    @classmethod
    def _one_owner_each(cls, sources: tuple[SourceConfig, ...]) -> tuple[SourceConfig, ...]:
        """A name, server, facility or folder names one source: two would merge their ids."""
        for what in ("name", "servers", "facilities", "folders"):
            seen: set[str] = set()
            for source in sources:
                values = getattr(source, what)
                for value in (values,) if isinstance(values, str) else values:
                    key = value.rstrip("/").lower()
                    if key in seen:
                        raise ValueError(f"{what}: {value!r} is given for two sources")
                    seen.add(key)
        return sources

    @classmethod
    def load(cls, path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Read the TOML file (if any), then let environment variables override single keys."""
        values: dict[str, Any] = {}
        if path is not None:
            values, text = load_toml(path, ConfigError)
            return _validate(cls, {**values, **_from_env(env)}, path, text, ConfigError)
        return _validate(cls, {**values, **_from_env(env)}, Path("<environment>"), "", ConfigError)


def _from_env(env: Mapping[str, str] | None) -> dict[str, str]:
    env = os.environ if env is None else env
    fields = Settings.model_fields
    return {
        key[len(_ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(_ENV_PREFIX) and key[len(_ENV_PREFIX) :].lower() in fields
    }


def load_toml(path: Path, error: type[E]) -> tuple[dict[str, Any], str]:
    """Parse one TOML file; a syntax error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise error(str(path), "", f"cannot read: {exc.strerror}") from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise error(str(path), "", f"not valid TOML: {exc}") from exc


def load_model(model: type[M], path: Path, error: type[E]) -> tuple[M, str]:
    """Parse and validate one data file against its pydantic schema."""
    data, text = load_toml(path, error)
    return _validate(model, data, path, text, error), text


def _validate(model: type[M], data: dict[str, Any], path: Path, text: str, error: type[E]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        keys = tuple(first["loc"])
        raise error(str(path), locate(text, keys), first["msg"]) from exc


def locate(text: str, keys: tuple[Any, ...]) -> str:
    """Render a key path (``rule[2].signal``) and the line it is most likely on."""
    where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
    line = _line_of(text, keys)
    return f"{where} (line {line})" if line else where


def _line_of(text: str, keys: tuple[Any, ...]) -> int:
    """Best effort: TOML loses positions, so find the n-th table of the path, then the key after it."""
    lines = text.splitlines()
    start = 0
    for i, key in enumerate(keys):
        if isinstance(key, int) and i > 0 and isinstance(keys[i - 1], str):
            header = re.compile(rf"^\s*\[\[\s*{re.escape(str(keys[i - 1]))}\s*\]\]")
            hits = [n for n, line in enumerate(lines) if header.match(line)]
            if key < len(hits):
                start = hits[key]
        elif isinstance(key, str):
            pattern = re.compile(rf"(^|[\s{{,\[.]){re.escape(key)}\s*=|^\s*\[+\s*{re.escape(key)}")
            for n in range(start, len(lines)):
                if pattern.search(lines[n]):
                    start = n
                    break
    return start + 1 if lines else 0
