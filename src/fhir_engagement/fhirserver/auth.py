"""Credentials for the FHIR server: a static bearer token, or SMART Backend Services.

SMART Backend Services (and NHS England's signed-JWT client credentials) sign a short-lived client
assertion with the adapter's private key (RS384, RS512 or ES384; ``kid`` in the header, a unique
``jti``, ``exp`` at most five minutes ahead) and trade it at the token endpoint for an access
token. The token is kept until shortly before it expires; a 401 from the FHIR server asks for a
fresh one once (fhir_client.py).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import jwt

from fhir_engagement.config import Settings, StatusSourceConfig
from fhir_engagement.errors import AuthRequiredError, ConfigError, RetryableDeliveryError

__all__ = ["BackendServicesAuth", "StaticToken", "TokenSource", "status_source_token", "token_source"]

TokenSource = Callable[[bool], Awaitable[str | None]]  # (refresh) -> bearer token or None

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ALGORITHMS = frozenset({"RS384", "RS512", "ES384"})
_MAX_LIFETIME = 300  # seconds: SMART Backend Services caps the assertion's exp at five minutes
_EARLY = 30  # seconds: refresh this long before the access token expires


@dataclass
class StaticToken:
    """A bearer token given in the environment, or none at all."""

    token: str | None

    async def __call__(self, refresh: bool) -> str | None:
        return self.token


@dataclass
class BackendServicesAuth:
    """Fetches and caches access tokens with a signed client assertion."""

    token_url: str
    client_id: str
    private_key: str
    kid: str
    session: aiohttp.ClientSession
    algorithm: str = "RS384"
    scope: str = "system/Flag.write system/Task.write system/Provenance.write system/*.read"
    lifetime: int = _MAX_LIFETIME
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0

    def __post_init__(self) -> None:
        if self.algorithm not in _ALGORITHMS:
            raise ValueError(f"algorithm must be one of {sorted(_ALGORITHMS)}")
        self.lifetime = min(self.lifetime, _MAX_LIFETIME)

    async def __call__(self, refresh: bool) -> str | None:
        """The current access token; a new one when asked, or when it is about to expire."""
        if refresh or self._token is None or time.time() >= self._expires - _EARLY:
            self._token, self._expires = await self._fetch()
        return self._token

    def assertion(self) -> str:
        """A signed client assertion, unique (jti) and short-lived (exp <= 5 minutes)."""
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url,
                  "jti": uuid.uuid4().hex, "iat": now, "exp": now + self.lifetime}
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm,
                          headers={"kid": self.kid, "typ": "JWT"})

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "scope": self.scope,
                "client_assertion_type": _ASSERTION_TYPE, "client_assertion": self.assertion()}
        try:
            async with self.session.post(self.token_url, data=form,
                                         timeout=aiohttp.ClientTimeout(total=30)) as resp:
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableDeliveryError(0, f"token endpoint unreachable: {exc!r}") from exc
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise AuthRequiredError(status, f"token endpoint refused the assertion: {body!r}"[:300])
        return str(body["access_token"]), time.time() + float(body.get("expires_in", 300))


def token_source(settings: Settings, session: aiohttp.ClientSession) -> TokenSource:
    """The credential the settings ask for: SMART Backend Services, a static token, or none."""
    if not settings.auth_token_url:
        return StaticToken(settings.fhir_token)
    return _backend_services(settings, session)


def status_source_token(source: StatusSourceConfig, session: aiohttp.ClientSession,
                        env: Mapping[str, str] | None = None) -> TokenSource:
    """A status service's credential: SMART Backend Services, a token from the environment
    variable it names (never from a file), or none."""
    if not source.auth_token_url:
        env = os.environ if env is None else env
        return StaticToken(env.get(source.token_env) if source.token_env else None)
    return _backend_services(source, session)


def _backend_services(settings: Settings | StatusSourceConfig,
                      session: aiohttp.ClientSession) -> TokenSource:
    missing = [name for name in ("auth_client_id", "auth_key_file", "auth_kid")
               if not getattr(settings, name)]
    if missing:
        raise ConfigError("settings", ", ".join(missing), "needed with auth_token_url")
    try:
        key = Path(str(settings.auth_key_file)).read_text()
    except OSError as exc:
        raise ConfigError(str(settings.auth_key_file), "auth_key_file", exc.strerror or "") from exc
    return BackendServicesAuth(settings.auth_token_url, str(settings.auth_client_id), key,
                               str(settings.auth_kid), session, settings.auth_alg)
