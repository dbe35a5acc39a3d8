"""Issue 10, items 1 and 6, end to end: how a token's mode is decided, and that a token has
exactly one spelling.

1. Mode confusion. Microsoft's rule: `idtyp` decides when the token has it; without it, a token
   is an application's only when it has no `scp` and its `sub` is its `oid` (an app token's
   `sub` is the service principal's object id; a user token's `sub` is pairwise, never her
   `oid`). An application's client authenticated with a secret or a certificate
   (`azpacr`/`appidacr` 1 or 2), never as a public client (0). Anything else is the 401, with
   nothing downstream.
6. Lenient base64url. Each segment must be canonical unpadded base64url (RFC 7515 section 2):
   the unused low bits of the last character zero, no `=`. A 256-byte signature is 342
   characters whose last one carries 4 unused bits, so every token had 16 spellings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.contract_helpers import claims_of, sign, token_claims
from tests.security.downstream import assert_error, assert_invalid_token, assert_rejected, watch
from tests.security.tokens import TokenBuilder, b64, signature

CUSTOMERS = "/api/customers?pageSize=200"
VEHICLES = "/api/vehicles?pageSize=1"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# --- 1. Mode confusion --------------------------------------------------------------------------


def _vehicle() -> dict[str, Any]:
    return {"name": f"Mode confusion {uuid.uuid4().hex[:8]}"}


def test_alices_token_with_roles_and_no_scp_reads_and_writes_nothing(
    api: Api, tokens: TokenBuilder
) -> None:
    """The reviewer's attack: a token the tenant signed for Alice through `portal` (a public
    client), with app roles instead of scopes and no `idtyp`. It was taken for the API's own
    application identity: 200 contacts read (Alice sees 100) and a vehicle created, with
    Dataverse logging the API's own application as the caller. (`tokens`: the API has its keys.)"""
    claims = token_claims(api, "alice", "portal")
    assert claims["oid"] != claims["sub"]
    assert claims["azpacr"] == "0"
    for name in ("scp", "idtyp"):
        claims.pop(name)
    claims["roles"] = ["customer.read", "vehicle.readwrite"]
    token = sign(api, claims)  # POST /_emulator/sign: the tenant's own key
    with watch(api) as seen:
        read = api.call("GET", CUSTOMERS, token=token)
        created = api.call("POST", "/api/vehicles", token=token, json_body=_vehicle())
    assert_invalid_token(read)
    assert_invalid_token(created)
    assert seen.nothing, seen.describe()


@pytest.mark.parametrize("version", [2, 1])
def test_a_user_token_never_becomes_an_app_token_by_its_roles(
    api: Api, tokens: TokenBuilder, version: int
) -> None:
    token = tokens.user_with_roles_only(version=version)
    for path in (VEHICLES, CUSTOMERS):
        assert_rejected(api, token, path)


@pytest.mark.parametrize("version", [2, 1])
def test_an_app_token_from_a_public_client_is_rejected(
    api: Api, tokens: TokenBuilder, version: int
) -> None:
    assert_rejected(api, tokens.app_token_from_public_client(version=version), VEHICLES)


@pytest.mark.parametrize("acr", ["0", "3", "", "01", 1, 2, ["1"], True])
def test_an_app_tokens_client_must_be_confidential(
    api: Api, tokens: TokenBuilder, acr: Any
) -> None:
    for idtyp in ("app", None):
        assert_rejected(api, tokens.app_token(azpacr=acr, idtyp=idtyp), VEHICLES)


def test_an_app_token_without_the_acr_claim_is_still_an_app_token(
    api: Api, tokens: TokenBuilder
) -> None:
    """`azpacr`/`appidacr` are checked where present, as the guidance says."""
    for idtyp in ("app", None):
        response = api.call("GET", VEHICLES, token=tokens.app_token(azpacr=None, idtyp=idtyp))
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("sub", [None, "", "0" * 43, 1])
def test_without_idtyp_and_scp_the_sub_must_be_the_oid(
    api: Api, tokens: TokenBuilder, sub: Any
) -> None:
    assert_rejected(api, tokens.app_token(idtyp=None, sub=sub), VEHICLES)


def test_a_user_token_without_idtyp_is_judged_on_its_scopes_only(
    api: Api, tokens: TokenBuilder
) -> None:
    token = tokens.token(scp="customer.read", roles=["customer.readwrite"], idtyp=None)
    assert api.call("GET", "/api/customers?pageSize=1", token=token).status_code == 200
    with watch(api) as seen:
        wrote = api.call("POST", "/api/customers", token=token, json_body={"lastName": "x"})
        vehicles = api.call("GET", VEHICLES, token=token)
    assert assert_error(wrote, 403)["code"] == "insufficient_scope"
    assert assert_error(vehicles, 403)["code"] == "application_only"
    assert seen.nothing, seen.describe()


Registration = Callable[..., None]


@pytest.fixture
def registration(api: Api) -> Iterator[Registration]:
    """Changes central-api's registration (token version, optional claims) for one test."""

    def configure(**changes: Any) -> None:
        api.entra_control("PUT", "apps/central-api", json=changes)

    try:
        yield configure
    finally:
        configure(access_token_version=2, optional_claims=["idtyp"])


def _issued(api: Api, **form: str) -> str:
    """An access token from Entra's token endpoint itself (no MSAL cache in between)."""
    tenant = api.stack.tenant
    response = api.http.post(
        f"{api.stack.entra_url}/{tenant.id}/oauth2/v2.0/token",
        data={**form, "scope": f"api://{tenant.app('central-api').client_id}/{form['scope']}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _entra_tokens(api: Api) -> tuple[str, str]:
    """Alice's token through `portal` (a public client) and `dealer-sync`'s app token."""
    tenant, material = api.stack.tenant, api.stack.material
    user = _issued(
        api,
        grant_type="password",
        client_id=tenant.app("portal").client_id,
        username=tenant.user("alice").upn,
        password=material.password("alice"),
        scope="customer.read",
    )
    app = _issued(
        api,
        grant_type="client_credentials",
        client_id=tenant.app("dealer-sync").client_id,
        client_secret=material.client_secret("dealer-sync"),
        scope=".default",
    )
    return user, app


@pytest.mark.parametrize("version", [2, 1])
@pytest.mark.parametrize("optional_claims", [["idtyp"], []])
def test_every_token_entra_issues_keeps_its_mode(
    api: Api, registration: Registration, version: int, optional_claims: list[str]
) -> None:
    """With or without `idtyp` (the README recommends it; a tenant may not have it)."""
    registration(access_token_version=version, optional_claims=optional_claims)
    user, app = _entra_tokens(api)
    for token in (user, app):
        claims = claims_of(token)
        assert ("idtyp" in claims) is bool(optional_claims)
        assert claims["ver"] == f"{version}.0"
    assert api.call("GET", "/api/customers?pageSize=1", token=user).status_code == 200
    assert api.call("GET", VEHICLES, token=app).status_code == 200  # application-only
    assert assert_error(api.call("GET", VEHICLES, token=user), 403)["code"] == "application_only"


# --- 6. Lenient base64url -----------------------------------------------------------------------


def _spellings(segment: str) -> list[str]:
    """Every spelling of `segment`'s last character that decodes to the same bytes."""
    unused = {0: 0, 2: 4, 3: 2}[len(segment) % 4]
    first = ALPHABET.index(segment[-1]) >> unused << unused
    return [segment[:-1] + ALPHABET[first + low] for low in range(1 << unused)]


def test_only_the_canonical_spelling_of_a_signature_is_accepted(
    api: Api, tokens: TokenBuilder
) -> None:
    head, payload, sig = tokens.token().split(".")
    assert len(sig) == 342  # 256 bytes: the last character carries 4 unused bits
    spellings = _spellings(sig)
    assert len(spellings) == 16
    assert spellings[0] == sig
    for other in spellings[1:]:  # before the genuine one, so nothing is cached for them
        assert_rejected(api, f"{head}.{payload}.{other}")
    response = api.call("GET", "/api/customers?pageSize=1", token=f"{head}.{payload}.{sig}")
    assert response.status_code == 200, response.text


def test_padded_segments_are_rejected(api: Api, tokens: TokenBuilder) -> None:
    segments = tokens.token().split(".")
    for i, segment in enumerate(segments):
        for padding in ("=" * (-len(segment) % 4), "==", "="):
            if padding:
                padded = [*segments[:i], segment + padding, *segments[i + 1 :]]
                assert_rejected(api, ".".join(padded))


def _with_unused_bits(value: dict[str, Any]) -> dict[str, Any]:
    """`value` with a filler member so that its base64url ends in a character with unused
    bits (a JSON length that is not a multiple of 3)."""
    filler = ""
    while len(b64({**value, "f": filler})) % 4 == 0:
        filler += "x"
    return {**value, "f": filler}


def _resigned(tokens: TokenBuilder, head: str, payload: str) -> str:
    """Segments signed RS256 by the tenant's key exactly as spelled: a valid signature."""
    sig = signature("RS256", tokens.key.key, f"{head}.{payload}".encode("ascii"))
    return f"{head}.{payload}.{b64(sig)}"


def test_a_header_or_payload_spelled_otherwise_is_rejected_though_signed(
    api: Api, tokens: TokenBuilder
) -> None:
    header = _with_unused_bits({"typ": "JWT", "alg": "RS256", "kid": tokens.key.kid})
    payload = _with_unused_bits(tokens.claims())
    head, body = b64(header), b64(payload)
    for other in _spellings(head)[1:]:
        assert_rejected(api, _resigned(tokens, other, body))
    for other in _spellings(body)[1:]:
        assert_rejected(api, _resigned(tokens, head, other))
    response = api.call("GET", "/api/customers?pageSize=1", token=_resigned(tokens, head, body))
    assert response.status_code == 200, response.text
