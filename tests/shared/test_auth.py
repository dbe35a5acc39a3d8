"""shared.auth in-process, against the Entra emulator's real discovery and keys over HTTPS."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.auth import (
    Access,
    ApplicationOnly,
    InsufficientScope,
    InvalidToken,
    Mode,
    Policy,
    SigningKeys,
    SigningKeysUnavailable,
    SubscriptionKeyInvalid,
    SubscriptionKeyMissing,
    SubscriptionKeys,
    TokenValidator,
    authorize,
)
from tests.clock import ManualClock as Clock
from tests.conftest import Emulator

API = "c8a8d8a5-a350-45e2-af0f-42a4e0716e11"
TID = "730301b0-eb39-4533-8015-c9d14296909d"


@pytest.fixture
def session(ca_bundle: Path) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.verify = str(ca_bundle)
        yield s


@pytest.fixture
def entra_clean(entra: Emulator, session: requests.Session) -> Iterator[Emulator]:
    session.post(f"{entra.url}/_emulator/reset", timeout=5)
    yield entra
    session.post(f"{entra.url}/_emulator/reset", timeout=5)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(entra_clean: Emulator, session: requests.Session, clock: Clock) -> SigningKeys:
    return SigningKeys(f"{entra_clean.url}/{TID}", session=session, clock=clock)


@pytest.fixture
def validator(keys: SigningKeys) -> TokenValidator:
    return TokenValidator(keys, tenant_id=TID, client_id=API)


def claims(entra: Emulator, version: str = "2.0", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = entra.url
    body: dict[str, Any] = {
        "iss": f"{base}/{TID}/v2.0" if version == "2.0" else f"{base}/{TID}/",
        "aud": API if version == "2.0" else f"api://{API}",
        "tid": TID,
        "oid": str(uuid.uuid4()),
        "sub": "s",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        "ver": version,
        "scp": "customer.read case.read",
    }
    body["azp" if version == "2.0" else "appid"] = str(uuid.uuid4())
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def sign(entra: Emulator, body: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    return str(entra.app.state.entra.sign(body, headers))


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_v2_user_token(entra_clean: Emulator, validator: TokenValidator) -> None:
    body = claims(entra_clean)
    principal = validator.validate(sign(entra_clean, body))
    assert principal.mode is Mode.USER
    assert principal.oid == body["oid"]
    assert principal.client_app_id == body["azp"]
    assert principal.permissions == {"customer.read", "case.read"}


@pytest.mark.parametrize("aud", [f"api://{API}", API])
def test_v1_user_token_either_audience_form(
    entra_clean: Emulator, validator: TokenValidator, aud: str
) -> None:
    principal = validator.validate(sign(entra_clean, claims(entra_clean, "1.0", aud=aud)))
    assert principal.mode is Mode.USER


def test_app_token_by_idtyp_or_sub(entra_clean: Emulator, validator: TokenValidator) -> None:
    by_idtyp = claims(entra_clean, scp=None, roles=["vehicle.read"], idtyp="app")
    by_sub = claims(entra_clean, scp=None, roles=["vehicle.read"])
    by_sub["sub"] = by_sub["oid"]  # without idtyp: no scp, and sub is the service principal
    for body in (by_idtyp, by_sub):
        principal = validator.validate(sign(entra_clean, body))
        assert principal.mode is Mode.APPLICATION
        assert principal.permissions == {"vehicle.read"}


def test_user_token_roles_are_ignored(entra_clean: Emulator, validator: TokenValidator) -> None:
    principal = validator.validate(
        sign(entra_clean, claims(entra_clean, scp="customer.read", roles=["vehicle.readwrite"]))
    )
    assert principal.mode is Mode.USER
    assert principal.permissions == {"customer.read"}


SP = "5d7a4b0e-9c1f-4e2a-8b3d-6f0e1c2a3b4d"  # a service principal's object id
APP_ROLES = ["vehicle.read"]


@pytest.mark.parametrize(
    ("overrides", "mode", "permissions"),
    [
        ({}, Mode.USER, {"customer.read", "case.read"}),
        ({"idtyp": "user"}, Mode.USER, {"customer.read", "case.read"}),
        ({"roles": APP_ROLES, "sub": SP, "oid": SP}, Mode.USER, {"customer.read", "case.read"}),
        ({"scp": None, "roles": APP_ROLES, "idtyp": "app"}, Mode.APPLICATION, APP_ROLES),
        ({"scp": None, "roles": APP_ROLES, "sub": SP, "oid": SP}, Mode.APPLICATION, APP_ROLES),
        ({"scp": None, "oid": SP, "sub": SP}, Mode.APPLICATION, set()),
        ({"scp": None, "idtyp": "app", "azpacr": "1"}, Mode.APPLICATION, set()),
        ({"scp": None, "oid": SP, "sub": SP, "azpacr": "2"}, Mode.APPLICATION, set()),
        ({"scp": "", "azpacr": "0"}, Mode.USER, set()),
    ],
)
def test_mode_as_microsoft_decides_it(
    entra_clean: Emulator,
    validator: TokenValidator,
    overrides: dict[str, Any],
    mode: Mode,
    permissions: Iterable[str],
) -> None:
    """`idtyp` when present; else `scp` means delegated, and no `scp` with `sub` == `oid`
    means an application. A user's `roles` never count."""
    principal = validator.validate(sign(entra_clean, claims(entra_clean, **overrides)))
    assert principal.mode is mode
    assert principal.permissions == set(permissions)


@pytest.mark.parametrize(
    "overrides",
    [
        {"scp": None, "roles": APP_ROLES},  # a user's token with roles: oid != sub
        {"scp": None, "roles": APP_ROLES, "sub": None},
        {"scp": None, "roles": APP_ROLES, "sub": SP},
        {"scp": None, "roles": APP_ROLES, "oid": SP, "sub": SP.upper()},
        {"scp": None, "roles": APP_ROLES, "idtyp": "user"},
        {"roles": APP_ROLES, "idtyp": "app"},
        {"roles": APP_ROLES, "idtyp": "device"},
        {"scp": None, "roles": APP_ROLES, "idtyp": "app", "azpacr": "0"},
        {"scp": None, "roles": APP_ROLES, "oid": SP, "sub": SP, "azpacr": "0"},
        {"scp": None, "roles": APP_ROLES, "idtyp": "app", "azpacr": 1},
        {"scp": None, "roles": APP_ROLES, "idtyp": "app", "azpacr": "3"},
    ],
)
def test_a_token_that_fits_neither_mode_is_invalid(
    entra_clean: Emulator, validator: TokenValidator, overrides: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToken):
        validator.validate(sign(entra_clean, claims(entra_clean, **overrides)))


def test_a_v1_app_token_from_a_public_client_is_invalid(
    entra_clean: Emulator, validator: TokenValidator
) -> None:
    body = claims(entra_clean, "1.0", scp=None, roles=APP_ROLES, oid=SP, sub=SP)
    assert validator.validate(sign(entra_clean, {**body, "appidacr": "1"})).is_application
    with pytest.raises(InvalidToken, match="public client"):
        validator.validate(sign(entra_clean, {**body, "appidacr": "0"}))


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 3600},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
        {"exp": None},
        {"exp": "soon"},
        {"exp": True},
        {"nbf": None},
        {"iat": None},
        {"tid": None},
        {"tid": str(uuid.uuid4())},
        {"iss": None},
        {"iss": "https://login.microsoftonline.com/" + TID + "/v2.0"},
        {"aud": None},
        {"aud": str(uuid.uuid4())},
        {"aud": f"api://{API}"},  # v1 form on a v2 token
        {"aud": [API]},
        {"aud": API + "/"},
        {"ver": None},
        {"scp": None},
        {"scp": ["customer.read"]},
        {"roles": "customer.read", "scp": None},
        {"azp": None},
        {"oid": None},
        {"scp": "customer.read", "idtyp": "app"},
    ],
)
def test_claim_checklist(
    entra_clean: Emulator, validator: TokenValidator, overrides: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToken):
        validator.validate(sign(entra_clean, claims(entra_clean, **overrides)))


def test_v1_issuer_on_v2_token_is_rejected(
    entra_clean: Emulator, validator: TokenValidator
) -> None:
    with pytest.raises(InvalidToken):
        validator.validate(sign(entra_clean, claims(entra_clean, iss=f"{entra_clean.url}/{TID}/")))


def test_encoding_attacks(entra_clean: Emulator, validator: TokenValidator) -> None:
    good = sign(entra_clean, claims(entra_clean))
    header, payload, signature = good.split(".")
    real_header = json.loads(base64.urlsafe_b64decode(header + "=="))
    forged = [
        f"{b64({**real_header, 'alg': 'none'})}.{payload}.",
        f"{b64({**real_header, 'alg': 'HS256'})}.{payload}.{signature}",
        f"{b64({**real_header, 'alg': 'RS512'})}.{payload}.{signature}",
        f"{b64({**real_header, 'crit': ['exp']})}.{payload}.{signature}",
        f"{b64({**real_header, 'kid': 'nope'})}.{payload}.{signature}",
        f"{b64({k: v for k, v in real_header.items() if k != 'kid'})}.{payload}.{signature}",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.x.y",
        f"{header}.{payload}.{signature[:-4]}",
        f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}",
        f"{header}.{payload} .{signature}",
        f"{header}.{payload}.{signature}=",
        f"{b64(b'[1,2]')}.{payload}.{signature}",
        f"{header}.{b64(claims(entra_clean, scp='customer.readwrite'))}.{signature}",
        "x" * 40_000,
        "",
    ]
    for token in forged:
        with pytest.raises(InvalidToken):
            validator.validate(token)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def spellings(segment: str) -> list[str]:
    """Every last character that decodes to the same bytes, the canonical one first."""
    unused = {0: 0, 2: 4, 3: 2}[len(segment) % 4]
    first = ALPHABET.index(segment[-1]) >> unused << unused
    return [segment[:-1] + ALPHABET[first + low] for low in range(1 << unused)]


def resign(entra: Emulator, header: str, payload: str) -> str:
    """The segments as spelled, with a valid RS256 signature by the tenant's key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = entra.app.state.entra.keys.active.key
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64(signature)}"


def test_only_canonical_base64url_is_accepted(
    entra_clean: Emulator, validator: TokenValidator, keys: SigningKeys
) -> None:
    """RFC 7515 section 2: unpadded, no unused bits set, nothing but the alphabet. Every other
    spelling is refused before any key is looked up (the validator starts with no keys)."""
    kid = entra_clean.app.state.entra.keys.active.kid
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    body = claims(entra_clean)
    while len(json.dumps(header)) % 3 == 0:  # a header whose last character has unused bits
        header["typ"] += " "
    while len(json.dumps(body)) % 3 != 1:  # and a payload whose last one has 4
        body["sub"] += "s"
    head, payload = b64(header), b64(body)
    genuine = resign(entra_clean, head, payload)
    sig = genuine.rsplit(".", 1)[1]
    assert len(sig) == 342
    assert len(spellings(sig)) == 16
    assert spellings(sig)[0] == sig
    assert len(spellings(head)) > 1
    assert len(spellings(payload)) == 16
    others = [f"{head}.{payload}.{s}" for s in spellings(sig)[1:]]
    others += [resign(entra_clean, h, payload) for h in spellings(head)[1:]]
    others += [resign(entra_clean, head, p) for p in spellings(payload)[1:]]
    for i, segment in enumerate((head, payload, sig)):
        for suffix in ("=", "==", "=" * (-len(segment) % 4), "\n", "\r\n", " "):
            parts = [head, payload, sig]
            parts[i] = segment + suffix
            others.append(".".join(parts))
        parts = [head, payload, sig]
        parts[i] = segment[:40] + "\n" + segment[40:]
        others.append(".".join(parts))
    for token in others:
        with pytest.raises(InvalidToken, match="base64url"):
            validator.validate(token)
    assert keys.fetches == 0
    assert validator.validate(genuine).mode is Mode.USER


def test_duplicate_claims_are_rejected(entra_clean: Emulator, validator: TokenValidator) -> None:
    body = claims(entra_clean)
    token = sign(entra_clean, body)
    header = token.split(".")[0]
    text = json.dumps(body)[:-1] + f', "aud": "{API}"}}'
    key = entra_clean.app.state.entra.keys.active
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    payload = b64(text.encode())
    signature = key.key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidToken, match="duplicate"):
        validator.validate(f"{header}.{payload}.{b64(signature)}")


def test_unknown_kids_refresh_at_most_once_per_interval(
    entra_clean: Emulator, validator: TokenValidator, keys: SigningKeys, clock: Clock
) -> None:
    validator.validate(sign(entra_clean, claims(entra_clean)))
    assert keys.fetches == 1
    for kid in ("a", "b", "c", "d"):
        with pytest.raises(InvalidToken):
            validator.validate(sign(entra_clean, claims(entra_clean), {"kid": kid}))
    assert keys.fetches == 1  # the keys were fetched just now: no point asking again
    clock.now += 301
    for kid in ("e", "f", "g"):
        with pytest.raises(InvalidToken):
            validator.validate(sign(entra_clean, claims(entra_clean), {"kid": kid}))
    assert keys.fetches == 2  # one refresh for the first unknown kid, none after


def test_rotated_key_is_picked_up(
    entra_clean: Emulator,
    validator: TokenValidator,
    keys: SigningKeys,
    session: requests.Session,
    clock: Clock,
) -> None:
    validator.validate(sign(entra_clean, claims(entra_clean)))
    new = session.post(f"{entra_clean.url}/_emulator/keys", json={"action": "add"}, timeout=5)
    kid = new.json()["kid"]
    session.post(
        f"{entra_clean.url}/_emulator/keys", json={"action": "promote", "kid": kid}, timeout=5
    ).raise_for_status()
    token = sign(entra_clean, claims(entra_clean))
    with pytest.raises(InvalidToken):  # new kid, but the keys were fetched moments ago
        validator.validate(token)
    clock.now += 301
    assert validator.validate(token).mode is Mode.USER
    assert keys.fetches == 2


def fail_key_fetch_once(entra: Emulator, session: requests.Session) -> None:
    """The next request for discovery or keys gets a 503."""
    session.post(
        f"{entra.url}/_emulator/faults",
        json={"path": "*/discovery/*", "status": 503, "count": 1},
        timeout=5,
    ).raise_for_status()


def test_cold_start_with_key_endpoint_down(
    entra_clean: Emulator, validator: TokenValidator, session: requests.Session, clock: Clock
) -> None:
    fail_key_fetch_once(entra_clean, session)
    token = sign(entra_clean, claims(entra_clean))
    with pytest.raises(SigningKeysUnavailable) as caught:
        validator.validate(token)
    assert caught.value.retry_after > 0
    with pytest.raises(SigningKeysUnavailable):  # no new fetch before the retry interval
        validator.validate(token)
    clock.now += 11
    assert validator.validate(token).mode is Mode.USER


def test_warm_failures_keep_last_good_keys(
    entra_clean: Emulator, validator: TokenValidator, session: requests.Session, clock: Clock
) -> None:
    token = sign(entra_clean, claims(entra_clean))
    validator.validate(token)
    for fault in ({"status": 500}, {"action": "garbage"}, {"status": 200, "body": {"keys": []}}):
        session.post(
            f"{entra_clean.url}/_emulator/faults",
            json={"path": "*/discovery/*", **fault},
            timeout=5,
        )
        clock.now += 301
        with pytest.raises(InvalidToken):
            validator.validate(sign(entra_clean, claims(entra_clean), {"kid": "unknown"}))
        assert validator.validate(token).mode is Mode.USER
        session.delete(f"{entra_clean.url}/_emulator/faults", timeout=5)


def test_subscription_keys() -> None:
    keys = SubscriptionKeys({"portal": ["k" * 20, "j" * 20], "dealer": ["d" * 20]})
    assert keys.check("k" * 20) == "portal"
    assert keys.check("j" * 20) == "portal"
    assert keys.check("d" * 20) == "dealer"
    for missing in (None, "", "   "):
        with pytest.raises(SubscriptionKeyMissing):
            keys.check(missing)
    for wrong in ("k" * 19, "k" * 21, "ø" * 20, "\udcff", "K" * 20):
        with pytest.raises(SubscriptionKeyInvalid):
            keys.check(wrong)


def test_policy(entra_clean: Emulator, validator: TokenValidator) -> None:
    user = validator.validate(sign(entra_clean, claims(entra_clean, scp="customer.read")))
    read = Policy("customer", Access.READ)
    write = Policy("customer", Access.WRITE)
    authorize(user, read)
    with pytest.raises(InsufficientScope) as caught:
        authorize(user, write)
    assert caught.value.required == ("customer.readwrite",)
    with pytest.raises(ApplicationOnly):
        authorize(user, Policy("vehicle", Access.READ, delegated=False))
    for near_miss in ("customer.readx", "xcustomer.read", "Customer.Read", "customer"):
        other = validator.validate(sign(entra_clean, claims(entra_clean, scp=near_miss)))
        with pytest.raises(InsufficientScope):
            authorize(other, read)
    app = validator.validate(
        sign(entra_clean, claims(entra_clean, scp=None, roles=["vehicle.readwrite"], idtyp="app"))
    )
    authorize(app, Policy("vehicle", Access.WRITE, delegated=False))
    with pytest.raises(InsufficientScope):
        authorize(app, read)
