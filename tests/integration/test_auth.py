"""SMART Backend Services against a token endpoint on a real socket that verifies the assertion."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_engagement.errors import AuthRequiredError
from fhir_engagement.fhirserver.auth import BackendServicesAuth
from fhir_engagement.fhirserver.client import FhirClient
from tests.conftest import serve_app


def _keys(algorithm: str) -> tuple[str, object]:
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
               if algorithm.startswith("RS") else ec.generate_private_key(ec.SECP384R1()))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return pem, private.public_key()


class TokenServer:
    """Checks each assertion like an authorisation server would, and counts what it issued."""

    def __init__(self, public_key: object, algorithm: str) -> None:
        self.public_key, self.algorithm = public_key, algorithm
        self.assertions: list[dict[str, object]] = []
        self.headers: list[dict[str, object]] = []
        self.expires_in = 300

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        assertion = str(form["client_assertion"])
        try:
            claims = jwt.decode(assertion, self.public_key, algorithms=[self.algorithm],
                                audience=str(request.url))
        except jwt.InvalidTokenError as exc:
            return web.json_response({"error": "invalid_client", "error_description": str(exc)},
                                     status=401)
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert form["grant_type"] == "client_credentials"
        self.assertions.append(claims)
        self.headers.append(jwt.get_unverified_header(assertion))
        return web.json_response({"access_token": f"token-{len(self.assertions)}",
                                  "expires_in": self.expires_in, "token_type": "bearer"})


@pytest.fixture(params=["RS384", "ES384"])
async def token_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str, TokenServer]]:
    pem, public = _keys(request.param)
    server = TokenServer(public, request.param)
    app = web.Application()
    app.router.add_post("/token", server.token)
    seen: list[str] = []

    async def fhir(req: web.Request) -> web.Response:  # a FHIR endpoint that wants token-2
        seen.append(req.headers.get("Authorization", ""))
        if req.headers.get("Authorization") != "Bearer token-2":
            return web.json_response({"resourceType": "OperationOutcome", "issue": []}, status=401)
        return web.json_response({"resourceType": "CapabilityStatement"})

    app.router.add_get("/fhir/metadata", fhir)
    async with serve_app(app) as served:
        yield served.url, pem, server


async def test_assertion_claims_cache_and_refresh(token_server: tuple[str, str, TokenServer]) -> None:
    base, pem, server = token_server
    async with aiohttp.ClientSession() as session:
        auth = BackendServicesAuth(f"{base}/token", "fhir-engagement", pem, "key-1", session,
                                   algorithm=server.algorithm, lifetime=900)
        assert await auth(False) == "token-1"
        assert await auth(False) == "token-1"  # cached
        assert await auth(True) == "token-2"  # asked for a fresh one
    first, second = server.assertions
    assert first["iss"] == first["sub"] == "fhir-engagement"
    assert first["jti"] != second["jti"]
    assert int(first["exp"]) - int(first["iat"]) <= 300  # capped, though 900 was asked
    assert int(first["exp"]) <= time.time() + 301
    assert server.headers[0]["kid"] == "key-1"
    assert server.headers[0]["alg"] == server.algorithm


async def test_a_401_gets_one_fresh_token_and_one_more_try(
    token_server: tuple[str, str, TokenServer],
) -> None:
    base, pem, server = token_server
    async with aiohttp.ClientSession() as session:
        auth = BackendServicesAuth(f"{base}/token", "fhir-engagement", pem, "key-1", session,
                                   algorithm=server.algorithm)
        client = FhirClient(f"{base}/fhir", session, auth)
        assert (await client.metadata())["resourceType"] == "CapabilityStatement"
    assert len(server.assertions) == 2  # token-1 refused by the server, token-2 accepted


async def test_a_refused_assertion_is_an_auth_error(token_server: tuple[str, str, TokenServer]) -> None:
    base, _, server = token_server
    other_pem, _ = _keys(server.algorithm)  # signed with a key the server does not know
    async with aiohttp.ClientSession() as session:
        auth = BackendServicesAuth(f"{base}/token", "fhir-engagement", other_pem, "key-1",
                                   session, algorithm=server.algorithm)
        with pytest.raises(AuthRequiredError):
            await auth(False)
