"""The token endpoint's refusals, in Entra's shape, and malformed input of every kind: never a
500, never a stack trace."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import requests

from devstack.entra import errors
from devstack.entra.errors import ProtocolError
from devstack.pki import Material, load_client_cert
from devstack.tenant import Tenant
from tests.devstack.entra_helpers import (
    CLIENT_ASSERTION_TYPE,
    OMIT,
    UserTokens,
    api_scope,
    assert_entra_error,
    client_credentials_form,
    obo_form,
    password_form,
    sha1_thumbprint,
)


@pytest.fixture
def session(http: requests.Session) -> requests.Session:
    return http


@pytest.mark.parametrize(
    ("overrides", "status", "error", "code"),
    [
        ({"grant_type": OMIT}, 400, "invalid_request", 900144),
        ({"scope": OMIT}, 400, "invalid_request", 900144),
        ({"client_id": OMIT}, 400, "invalid_request", 900144),
        ({"grant_type": "authorization_code"}, 400, "invalid_request", 900144),  # no code
        ({"grant_type": "bogus"}, 400, "unsupported_grant_type", 70003),
        ({"client_id": str(uuid.UUID(int=7))}, 400, "unauthorized_client", 700016),
        ({"client_secret": ""}, 401, "invalid_client", 7000215),
        ({"client_secret": OMIT}, 401, "invalid_client", 7000218),
    ],
    ids=[
        "no-grant-type",
        "no-scope",
        "no-client-id",
        "auth-code",
        "bogus-grant",
        "unknown-client",
        "empty-secret",
        "no-secret",
    ],
)
def test_token_endpoint_refusals(
    session: requests.Session,
    token_url: str,
    tenant: Tenant,
    material: Material,
    overrides: dict[str, str],
    status: int,
    error: str,
    code: int,
) -> None:
    response = session.post(token_url, data=client_credentials_form(tenant, material, **overrides))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_entra_error(response.json(), error, code)


def test_public_client_presenting_a_secret(
    session: requests.Session, token_url: str, tenant: Tenant, material: Material
) -> None:
    form = password_form(
        tenant, "alice@demo.example", material.password("alice"), client_secret="anything"
    )
    response = session.post(token_url, data=form)
    assert_entra_error(response.json(), "invalid_client", 700025)


def test_unknown_user_and_unknown_tenant(
    session: requests.Session, entra: Any, token_url: str, tenant: Tenant
) -> None:
    response = session.post(token_url, data=password_form(tenant, "mallory@demo.example", "x"))
    assert_entra_error(response.json(), "invalid_grant", 50034)
    elsewhere = session.post(
        f"{entra.url}/not-our-tenant.example/oauth2/v2.0/token", data={"grant_type": "password"}
    )
    assert elsewhere.status_code == 400
    assert_entra_error(elsewhere.json(), "invalid_tenant", 90002)


@pytest.mark.parametrize("alias", ["organizations", "common"])
def test_single_tenant_apps_refuse_multi_tenant_endpoints(
    session: requests.Session, entra: Any, tenant: Tenant, material: Material, alias: str
) -> None:
    response = session.post(
        f"{entra.url}/{alias}/oauth2/v2.0/token", data=client_credentials_form(tenant, material)
    )
    assert response.status_code == 400
    assert_entra_error(response.json(), "invalid_request", 50194)
    # The domain works like the GUID.
    by_domain = session.post(
        f"{entra.url}/{tenant.domain}/oauth2/v2.0/token",
        data=client_credentials_form(tenant, material),
    )
    assert by_domain.status_code == 200, by_domain.text


def test_get_on_token_endpoint(session: requests.Session, token_url: str) -> None:
    response = session.get(token_url)
    assert response.status_code == 400
    assert_entra_error(response.json(), "invalid_request", 900561)


def test_v1_token_endpoint_takes_resource(
    session: requests.Session, entra: Any, tenant: Tenant, material: Material
) -> None:
    form = client_credentials_form(tenant, material, scope=OMIT)
    form["resource"] = tenant.app("central-api").identifier_uris[0]
    response = session.post(f"{entra.url}/{tenant.id}/oauth2/token", data=form)
    assert response.status_code == 200, response.text
    assert "access_token" in response.json()


# --- client assertions ---------------------------------------------------------------------------


def _client_assertion(
    material: Material, app: str, token_url: str, client_id: str, **overrides: Any
) -> str:
    key, _ = load_client_cert(material.client_certs[app])
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": token_url,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
    }
    headers = {"x5t": sha1_thumbprint(material.client_certs[app])}
    alg = overrides.pop("alg", "RS256")
    headers.update(overrides.pop("headers", {}))
    claims.update(overrides)
    # PyJWS rather than jwt.encode, which would refuse claims of the wrong type.
    return jwt.PyJWS().encode(json.dumps(claims).encode(), key, algorithm=alg, headers=headers)


def _assertion_form(tenant: Tenant, assertion: str, *, name_client: bool = True) -> dict[str, str]:
    """dealer-sync asks for a central-API token, authenticated by a client assertion; without
    `name_client` the body leaves `client_id` to the assertion."""
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant.app("dealer-sync").client_id,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": api_scope(tenant),
    }
    if not name_client:
        del form["client_id"]
    return form


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({}, None),
        ({"aud": "https://login.example/other/oauth2/v2.0/token"}, 50012),
        ({"iss": "36b4cf69-0000-0000-0000-000000000000"}, 700021),
        ({"exp": 1_000_000, "nbf": 999_000}, 700024),
        ({"headers": {"x5t": "AAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, 700027),
        ({"alg": "RS384"}, 5002738),
    ],
    ids=["valid", "wrong-aud", "wrong-iss", "expired", "unregistered-cert", "alg-rs384"],
)
def test_client_assertion_checks(
    session: requests.Session,
    token_url: str,
    tenant: Tenant,
    material: Material,
    overrides: dict[str, Any],
    code: int | None,
) -> None:
    client_id = tenant.app("dealer-sync").client_id
    assertion = _client_assertion(material, "dealer-sync", token_url, client_id, **overrides)
    response = session.post(token_url, data=_assertion_form(tenant, assertion))
    if code is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 401, response.text
    assert_entra_error(response.json(), "invalid_client", code)


def test_client_assertion_names_the_client_when_body_does_not(
    session: requests.Session, token_url: str, tenant: Tenant, material: Material
) -> None:
    client_id = tenant.app("dealer-sync").client_id
    assertion = _client_assertion(material, "dealer-sync", token_url, client_id)
    response = session.post(token_url, data=_assertion_form(tenant, assertion, name_client=False))
    assert response.status_code == 200, response.text


# --- malformed input -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _evil_jwt(header: Any, payload: Any) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.c2ln"


MALFORMED_BODIES: list[bytes | str] = [
    b"",
    b"\xff\xfe\x00garbage",
    b"grant_type",
    b"grant_type=%ZZ&client_id=%",
    b"=&&&==",
    "grant_type=client_credentials&client_id=\u00e9\u00e9&scope=\u2603/.default",
    b'{"grant_type": "client_credentials"}',
    b"grant_type=client_credentials&client_id=" + b"a" * 100_000,
    b"grant_type=client_credentials&grant_type=password",
    b"grant_type=client_credentials&client_id=36b4cf69-811d-44fe-898b-657ecd8060ab"
    b"&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    b"&client_assertion=not-a-jwt&scope=x/.default",
    b"grant_type=client_credentials&client_assertion=a.b.c&scope=%20",
    b"grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&requested_token_use=on_behalf_of",
    b"grant_type=refresh_token&client_id=c9336fe4-744f-47c5-bf53-9b459f5eb5b1&refresh_token=x",
    b"grant_type=password&client_id=c9336fe4-744f-47c5-bf53-9b459f5eb5b1"
    b"&username=%00&password=%00&scope=%00",
    b"grant_type=client_credentials&client_id=36b4cf69-811d-44fe-898b-657ecd8060ab"
    b"&client_secret=x&scope=https://",
    b"grant_type=client_credentials&client_id=36b4cf69-811d-44fe-898b-657ecd8060ab"
    b"&client_secret=x&scope=////.default",
]


@pytest.mark.parametrize("body", MALFORMED_BODIES, ids=lambda b: repr(b)[:40])
def test_malformed_bodies_get_entra_errors(
    session: requests.Session, token_url: str, body: bytes | str
) -> None:
    response = session.post(
        token_url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert 400 <= response.status_code < 500, response.text
    data = response.json()
    assert {"error", "error_description", "error_codes", "trace_id"} <= set(data)
    assert "Traceback" not in response.text


def _evil_assertions(tenant: Tenant) -> list[str]:
    api = tenant.app("central-api").client_id
    return [
        _evil_jwt({"alg": "none", "typ": "JWT"}, {"aud": api}),
        _evil_jwt({"alg": "RS256", "kid": ["list"]}, {"aud": api}),
        _evil_jwt({"alg": "RS256", "kid": None, "x5t": 42}, {}),
        _evil_jwt({"alg": "HS256", "kid": "x"}, {"exp": "soon"}),
        _evil_jwt([1, 2, 3], {"aud": api}),
        "a.b",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOk5hTn0.AAAA",  # exp: NaN
        _evil_jwt({"alg": "RS256"}, {"exp": 10**400, "aud": api}),
        "\u2603.\u2603.\u2603",
    ]


def test_malformed_obo_assertions(
    session: requests.Session, token_url: str, tenant: Tenant, material: Material
) -> None:
    for assertion in _evil_assertions(tenant):
        response = session.post(token_url, data=obo_form(tenant, material, assertion))
        assert 400 <= response.status_code < 500, (assertion, response.text)
        assert response.json()["error"] in {"invalid_request", "invalid_grant"}


def test_malformed_client_assertions_and_basic_auth(
    session: requests.Session, token_url: str, tenant: Tenant
) -> None:
    for assertion in _evil_assertions(tenant):
        response = session.post(token_url, data=_assertion_form(tenant, assertion))
        assert 400 <= response.status_code < 500, (assertion, response.text)
    for header in ("Basic !!!", "Basic " + _b64(b"\xff\xfe"), "Basic", "Basic Og=="):
        response = session.post(
            token_url,
            data={"grant_type": "client_credentials", "scope": api_scope(tenant)},
            headers={"Authorization": header},
        )
        assert 400 <= response.status_code < 500, (header, response.text)
        assert "error_codes" in response.json()


@pytest.mark.parametrize(
    "path",
    [
        "/%00/v2.0/.well-known/openid-configuration",
        "/..%2f..%2fetc/discovery/v2.0/keys",
        "/common/userrealm/%ff%fe",
        "/common/userrealm/" + "a" * 5000,
    ],
)
def test_malformed_paths(session: requests.Session, entra: Any, path: str) -> None:
    response = session.get(entra.url + path)
    assert response.status_code < 500
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": 10**400},
        {"exp": "tomorrow"},
        {"nbf": float("nan")},
        {"exp": float("inf")},
        {"aud": ["a", "b"]},
        {"aud": None},
        {"oid": 42},
        {"scp": ["customer.read"]},
        {"iss": None},
        {"sub": 12},
    ],
    ids=repr,
)
def test_signed_assertions_with_evil_claims(
    session: requests.Session,
    token_url: str,
    tenant: Tenant,
    material: Material,
    user_tokens: UserTokens,
    overrides: dict[str, Any],
) -> None:
    assertion = user_tokens.entra.sign(user_tokens.claims(**overrides))
    response = session.post(token_url, data=obo_form(tenant, material, assertion))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in {"invalid_request", "invalid_grant"}


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"exp": 10**400}, 401),
        ({"nbf": float("nan")}, 401),
        ({"aud": [], "iss": 1}, 401),
        ({"jti": None}, 401),
        ({"aud": ["https://elsewhere.example/token", "<token_url>"]}, 200),
    ],
    ids=["huge-exp", "nan-nbf", "types", "no-jti", "aud-list"],
)
def test_signed_client_assertions_with_evil_claims(
    session: requests.Session,
    token_url: str,
    tenant: Tenant,
    material: Material,
    overrides: dict[str, Any],
    status: int,
) -> None:
    client_id = tenant.app("dealer-sync").client_id
    if "aud" in overrides and isinstance(overrides["aud"], list):
        overrides["aud"] = [token_url if a == "<token_url>" else a for a in overrides["aud"]]
    assertion = _client_assertion(material, "dealer-sync", token_url, client_id, **overrides)
    response = session.post(token_url, data=_assertion_form(tenant, assertion))
    assert response.status_code == status, response.text


def test_every_protocol_error_has_a_distinct_oauth_error_and_4xx_status() -> None:
    classes = ProtocolError.__subclasses__()
    assert len({c.error for c in classes}) == len(classes)
    for cls in classes:
        assert cls.status in (400, 401), cls
        assert cls.__name__ in (errors.__doc__ or ""), "listed in the documented tree"
