"""Subscription-key families S1–S3 of the security catalog, through the API host.

The key is checked first: a request without a valid one gets the contract's exact 401 whatever
its token, and costs nothing downstream. Settings that the running stack does not have
(`SUBSCRIPTION_KEY_IN_QUERY`, other keys) are tried by swapping the process's runtime for one
with those settings and the same services; the original is put back afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from shared import runtime as runtime_module
from shared.auth import SubscriptionKeyInvalid, SubscriptionKeyMissing, SubscriptionKeys
from tests.api.conftest import Api
from tests.api.contract_helpers import INVALID_KEY, MISSING_KEY
from tests.security.downstream import (
    assert_error,
    assert_invalid_token,
    watch,
)
from tests.security.tokens import TokenBuilder

CUSTOMERS = "/api/customers?pageSize=1"
VEHICLES = "/api/vehicles?pageSize=1"

Configure = Callable[..., None]


def assert_key_refused(response: Any, message: str, seen: Any) -> None:
    assert_error(response, 401, message)
    assert "WWW-Authenticate" not in response.headers  # not a token problem
    assert seen.nothing, seen.describe()


@pytest.fixture
def configure(api: Api, monkeypatch: pytest.MonkeyPatch) -> Configure:
    """`configure(subscription_key_in_query=True, subscriptions={...})`: the API runs with those
    settings until the test ends (same key cache, token caches and Dataverse pool)."""
    current = runtime_module.runtime()

    def apply(
        *,
        subscription_key_in_query: bool = False,
        subscriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        keys = {
            k: tuple(v) for k, v in (subscriptions or current.settings.subscription_keys).items()
        }
        settings = dataclasses.replace(
            current.settings,
            subscription_key_in_query=subscription_key_in_query,
            subscription_keys=keys,
        )
        swapped = dataclasses.replace(
            current, settings=settings, subscriptions=SubscriptionKeys(keys)
        )
        monkeypatch.setattr(runtime_module, "_current", swapped)

    return apply


def raw_get(api: Api, headers: list[tuple[str, bytes]]) -> tuple[int, dict[str, Any]]:
    """A request with header values as raw bytes (requests would refuse or re-encode them)."""
    url = urlsplit(api.url)
    assert url.scheme == "http"
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
    try:
        connection.putrequest("GET", CUSTOMERS)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def assert_raw_key_refused(api: Api, tokens: TokenBuilder, key: bytes, message: str) -> None:
    """`key` sent as raw header bytes, with a valid token: the 401 with `message`, and nothing
    downstream."""
    headers = [
        ("Ocp-Apim-Subscription-Key", key),
        ("Authorization", f"Bearer {tokens.token()}".encode("ascii")),
    ]
    with watch(api) as seen:
        status, body = raw_get(api, headers)
    assert status == 401
    assert body["message"] == message
    assert seen.nothing, seen.describe()


# --- S1 missing and invalid keys, checked first ---------------------------------------------


@pytest.mark.parametrize("token", ["valid", "invalid", "none", "expired"])
def test_s1_missing_key_whatever_the_token(api: Api, tokens: TokenBuilder, token: str) -> None:
    sent = {
        "valid": tokens.token(),
        "invalid": "not.a.token",
        "none": None,
        "expired": tokens.expired(),
    }[token]
    with watch(api) as seen:
        response = api.call("GET", CUSTOMERS, key=None, token=sent)
    assert_key_refused(response, MISSING_KEY, seen)
    assert response.json() == {
        "statusCode": 401,
        "message": MISSING_KEY,
        "code": "subscription_key_missing",
        "correlationId": response.headers["x-correlation-id"],
    }


@pytest.mark.parametrize("token", ["valid", "invalid", "none"])
def test_s1_invalid_key_whatever_the_token(api: Api, tokens: TokenBuilder, token: str) -> None:
    sent = {"valid": tokens.token(), "invalid": "not.a.token", "none": None}[token]
    with watch(api) as seen:
        response = api.call("GET", CUSTOMERS, key=secrets.token_urlsafe(30), token=sent)
    assert_key_refused(response, INVALID_KEY, seen)
    assert response.json()["code"] == "subscription_key_invalid"


def test_s1_application_tokens_too(api: Api, tokens: TokenBuilder) -> None:
    for key, message in ((None, MISSING_KEY), ("x" * 40, INVALID_KEY)):
        with watch(api) as seen:
            response = api.call("GET", VEHICLES, key=key, token=tokens.app_token())
        assert_key_refused(response, message, seen)


@pytest.mark.parametrize("value", [b"", b" ", b"\t", b"  \t "])
def test_s1_empty_key_is_missing(api: Api, tokens: TokenBuilder, value: bytes) -> None:
    assert_raw_key_refused(api, tokens, value, MISSING_KEY)


def near_misses(key: str) -> list[str]:
    return [
        key[:-1],
        key + "x",
        key.upper() if key.upper() != key else key.lower(),
        key[::-1],
        f"{key},{key}",
        f"{key} {key}",
        f'"{key}"',
        f"Bearer {key}",
        key[: len(key) // 2],
        "x" * 8192,
    ]


def test_s1_near_misses_are_invalid(api: Api, tokens: TokenBuilder) -> None:
    token = tokens.token()
    for key in near_misses(api.subscription_key):
        with watch(api) as seen:
            response = api.call("GET", CUSTOMERS, key=key, token=token)
        assert_key_refused(response, INVALID_KEY, seen)


def test_s1_the_header_name_is_case_insensitive(api: Api, tokens: TokenBuilder) -> None:
    for name in ("ocp-apim-subscription-key", "OCP-APIM-SUBSCRIPTION-KEY"):
        response = api.call(
            "GET", CUSTOMERS, key=None, token=tokens.token(), headers={name: api.subscription_key}
        )
        assert response.status_code == 200, response.text


def test_s1_a_key_under_another_header_is_missing(api: Api, tokens: TokenBuilder) -> None:
    for name in ("Subscription-Key", "X-Api-Key", "Ocp-Apim-Subscription"):
        with watch(api) as seen:
            response = api.call(
                "GET",
                CUSTOMERS,
                key=None,
                token=tokens.token(),
                headers={name: api.subscription_key},
            )
        assert_key_refused(response, MISSING_KEY, seen)


def test_s1_a_valid_key_then_the_token_is_checked(api: Api) -> None:
    response = api.call("GET", CUSTOMERS, token="not.a.token")
    assert_invalid_token(response)


def test_s1_the_key_comes_before_input_checks(api: Api, tokens: TokenBuilder) -> None:
    """Neither bad input nor a bad token is looked at without a key; then the token comes
    before the input."""
    for path in ("/api/customers?$filter=x", "/api/customers/not-a-guid"):
        with watch(api) as seen:
            response = api.call("GET", path, key=None, token=tokens.token())
        assert_key_refused(response, MISSING_KEY, seen)
        assert_invalid_token(api.call("GET", path, token="not.a.token"))


# --- S2 the key in the query string ---------------------------------------------------------


def test_s2_query_key_is_not_a_key_by_default(api: Api, tokens: TokenBuilder) -> None:
    assert not runtime_module.runtime().settings.subscription_key_in_query
    key = quote(api.subscription_key, safe="")
    for name in ("subscription-key", "Subscription-Key", "subscription_key"):
        with watch(api) as seen:
            response = api.call("GET", f"{CUSTOMERS}&{name}={key}", key=None, token=tokens.token())
        assert_key_refused(response, MISSING_KEY, seen)


def test_s2_query_key_accepted_when_enabled(
    api: Api, tokens: TokenBuilder, configure: Configure
) -> None:
    configure(subscription_key_in_query=True)
    key = quote(api.subscription_key, safe="")
    response = api.call(
        "GET", f"{CUSTOMERS}&subscription-key={key}", key=None, token=tokens.token()
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 1  # the key is not taken for a query parameter
    with watch(api) as seen:
        response = api.call(
            "GET", f"{CUSTOMERS}&subscription-key={'x' * 30}", key=None, token=tokens.token()
        )
    assert_key_refused(response, INVALID_KEY, seen)


def test_s2_the_header_wins_over_the_query(
    api: Api, tokens: TokenBuilder, configure: Configure
) -> None:
    configure(subscription_key_in_query=True)
    key = quote(api.subscription_key, safe="")
    with watch(api) as seen:
        response = api.call(
            "GET", f"{CUSTOMERS}&subscription-key={key}", key="x" * 30, token=tokens.token()
        )
    assert_key_refused(response, INVALID_KEY, seen)
    response = api.call("GET", f"{CUSTOMERS}&subscription-key={'x' * 30}", token=tokens.token())
    assert response.status_code == 200, response.text


def test_s2_enabled_still_checks_the_key_first(
    api: Api, tokens: TokenBuilder, configure: Configure
) -> None:
    configure(subscription_key_in_query=True)
    with watch(api) as seen:
        response = api.call("GET", CUSTOMERS, key=None, token="not.a.token")
    assert_key_refused(response, MISSING_KEY, seen)


def test_s2_settings_restored(api: Api) -> None:
    """The swap above is undone: the process's runtime reads the environment's settings."""
    assert not runtime_module.runtime().settings.subscription_key_in_query


# --- S3 comparison, odd keys, rotation ------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "nøkkel-med-æøå-1234567890".encode(),  # UTF-8
        "nøkkel-med-æøå-1234567890".encode("latin-1"),
        b"\xff\xfe\xfd" * 10,
        b"\xc3\x28" * 10,  # not UTF-8 at all
        "ключ-подписки-1234567890".encode(),
        "🔑".encode() * 8,
    ],
)
def test_s3_non_ascii_keys_are_invalid_never_500(
    api: Api, tokens: TokenBuilder, key: bytes
) -> None:
    assert_raw_key_refused(api, tokens, key, INVALID_KEY)


def test_s3_non_ascii_text_keys_in_process() -> None:
    keys = SubscriptionKeys({"s": ["k" * 20]})
    for odd in ("ø" * 20, "\udcff" * 20, "\ud800", "\x00" * 20, "k" * 19 + "\u0301"):
        with pytest.raises(SubscriptionKeyInvalid):
            keys.check(odd)
    for empty in (None, "", " \t "):
        with pytest.raises(SubscriptionKeyMissing):
            keys.check(empty)


def test_s3_both_keys_of_each_subscription_work(api: Api, tokens: TokenBuilder) -> None:
    subscriptions = api.stack.material.subscription_keys
    assert all(len(keys) == 2 for keys in subscriptions.values())
    token = tokens.app_token()
    for keys in subscriptions.values():
        for key in keys:
            response = api.call("GET", VEHICLES, key=key, token=token)
            assert response.status_code == 200, response.text


def test_s3_rotation(api: Api, tokens: TokenBuilder, configure: Configure) -> None:
    """Primary and secondary: the new key is added, clients move, the old one is dropped."""
    old, new = secrets.token_urlsafe(30), secrets.token_urlsafe(30)
    token = tokens.app_token()

    def status(key: str) -> int:
        return api.call("GET", VEHICLES, key=key, token=token).status_code

    configure(subscriptions={"rotating": [old]})
    assert (status(old), status(new)) == (200, 401)
    configure(subscriptions={"rotating": [old, new]})
    assert (status(old), status(new)) == (200, 200)
    configure(subscriptions={"rotating": [new]})
    assert (status(old), status(new)) == (401, 200)
    response = api.call("GET", VEHICLES, key=api.subscription_key, token=token)
    assert_error(response, 401, INVALID_KEY)


def test_s3_every_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the comparison runs against every configured key whichever matches, so
    the time taken says nothing about which key (or subscription) was hit."""
    import hmac

    from shared.auth import subscription

    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(subscription.hmac, "compare_digest", counting)
    keys = SubscriptionKeys({"a": ["a" * 20, "b" * 20], "c": ["c" * 20]})
    for presented in ("a" * 20, "c" * 20, "z" * 20):
        calls.clear()
        with contextlib.suppress(SubscriptionKeyInvalid):
            keys.check(presented)
        assert len(calls) == 3
