"""Outside review, item 4: page tokens could be forged and carried personal data.

End to end through the API host, with real paging against the Dataverse emulator. Before the
fix a page token was base64 JSON: Dataverse's `$skiptoken` (whose paging cookie holds the last
row's values) and an unkeyed hash of the query that any client could compute. Now it is sealed
(AES-GCM under a subkey of `API_DATA_KEY`) for one caller and one query and expires; anything
else is a 400 `invalid_input` naming `pageToken`, and Dataverse sees nothing
(`shared/domains/paging.py`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from tests.api.conftest import Api
from tests.api.contract_helpers import (
    assert_error,
    client_id,
    new_customer,
    sign,
    store_rows,
    token_claims,
    unique,
)
from tests.faults import conftest as faults_fixtures
from tests.faults.conftest import Restart
from tests.security.downstream import watch

fresh = faults_fixtures.fresh  # a runtime of its own, with settings changed (tests/faults)

CUSTOMERS = "/api/customers?pageSize=2"


def first_page(api: Api, path: str = CUSTOMERS, **caller: Any) -> tuple[list[dict[str, Any]], str]:
    response = api.call("GET", path, **(caller or {"user": "alice"}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["nextPageToken"], "the query needs a second page"
    return body["items"], body["nextPageToken"]


def next_page(api: Api, path: str, page_token: str, **caller: Any) -> Any:
    return api.call("GET", f"{path}&pageToken={page_token}", **(caller or {"user": "alice"}))


def assert_refused(api: Api, path: str, page_token: str, **caller: Any) -> str:
    """400 naming `pageToken`, and not one request reached Dataverse; answers the message."""
    with watch(api) as seen:
        response = next_page(api, path, page_token, **caller)
    body = assert_error(response, 400, "invalid_input", mentions=("pageToken",))
    assert seen.dataverse == [], [f"{r['method']} {r['path']}" for r in seen.dataverse]
    return str(body["message"])


# --- what a client could do with the old format -------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def old_fingerprint(domain: str, params: dict[str, str]) -> str:
    """The old format's "binding": a plain hash anyone can compute."""
    shape = sorted((k, v) for k, v in params.items() if k not in ("pageSize", "pageToken"))
    raw = json.dumps([domain, shape], ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()[:32]


def old_token(skiptoken: str, domain: str, params: dict[str, str]) -> str:
    raw = json.dumps({"s": skiptoken, "f": old_fingerprint(domain, params)}, separators=(",", ":"))
    return _b64(raw.encode("utf-8"))


def rebound(token: str, domain: str, params: dict[str, str]) -> str:
    """`token` re-addressed to another query, as the old format allowed; an opaque token has
    nothing to re-address and is sent as it is."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return token
    return old_token(data["s"], domain, params)


@pytest.mark.parametrize(
    "skiptoken",
    [
        '<cookie pagenumber="2" pagingcookie="AAAA" istracking="False" />',
        "1' or 1 eq 1",
        "x" * 600,
    ],
)
def test_a_token_forged_the_old_way_is_refused_before_dataverse(api: Api, skiptoken: str) -> None:
    forged = old_token(skiptoken, "customer", {})
    assert_refused(api, CUSTOMERS, forged)


# --- bound to the caller ------------------------------------------------------------------


def test_bob_cannot_use_alices_token(api: Api) -> None:
    _, alices = first_page(api, user="alice")
    assert_refused(api, CUSTOMERS, alices, user="bob")
    assert_refused(api, CUSTOMERS, alices, app="dealer-sync")
    # Alice herself may, through any client app that may list customers.
    assert next_page(api, CUSTOMERS, alices, user="alice", client="reporting").status_code == 200


def test_an_applications_token_is_its_own(api: Api) -> None:
    _, apps = first_page(api, app="dealer-sync")
    assert next_page(api, CUSTOMERS, apps, app="dealer-sync").status_code == 200
    assert_refused(api, CUSTOMERS, apps, user="alice")
    # Another client application, however alike its token otherwise.
    other = client_id(api, "no-access")
    claims = token_claims(api, None, "dealer-sync")
    claims.update({"azp" if "azp" in claims else "appid": other})
    impostor = sign(api, claims)
    assert api.call("GET", CUSTOMERS, token=impostor).status_code == 200
    assert_refused(api, CUSTOMERS, apps, token=impostor)


# --- bound to the query -------------------------------------------------------------------


def test_a_token_from_one_query_is_refused_by_another(api: Api) -> None:
    word = unique("Pt")
    for _ in range(4):
        new_customer(api, lastName=word)
    searched = f"/api/customers?q={word}&pageSize=1"
    items, token = first_page(api, searched)
    for domain, params in [
        ("customer", {"q": word + "x"}),
        ("customer", {}),
        ("case", {"q": word}),
        ("case", {"q": word, "status": "active"}),
    ]:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        path = f"/api/{domain}s?{query}&pageSize=1".replace("?&", "?")
        assert_refused(api, path, token)
        assert_refused(api, path, rebound(token, domain, params))

    # The page size is not part of the query: the next pages continue where this one ended.
    whole = api.call("GET", f"/api/customers?q={word}&pageSize=4", user="alice").json()["items"]
    following = next_page(api, f"/api/customers?q={word}&pageSize=3", token)
    assert following.status_code == 200, following.text
    assert [c["id"] for c in items + following.json()["items"]] == [c["id"] for c in whole]


# --- expiry and keys ----------------------------------------------------------------------


def test_an_expired_token_is_refused(api: Api, fresh: Restart) -> None:
    fresh(PAGE_TOKEN_LIFETIME_SECONDS="1")
    _, token = first_page(api)
    issued_by = time.time()
    # The token's expiry is at most a second after it was sealed, and it was sealed by now.
    time.sleep(max(0.0, issued_by + 1.05 - time.time()))
    assert "expired" in assert_refused(api, CUSTOMERS, token)


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def test_rotation_keeps_the_previous_key_and_no_other(api: Api, fresh: Restart) -> None:
    current = api.stack.settings["API_DATA_KEY"]
    _, before = first_page(api)
    newer = _key()

    fresh(API_DATA_KEY=newer, API_DATA_KEY_PREVIOUS=current)
    assert next_page(api, CUSTOMERS, before).status_code == 200
    _, after = first_page(api)

    fresh(API_DATA_KEY=_key(), API_DATA_KEY_PREVIOUS=newer)  # a second rotation
    assert next_page(api, CUSTOMERS, after).status_code == 200
    assert_refused(api, CUSTOMERS, before)

    fresh(API_DATA_KEY=_key(), API_DATA_KEY_PREVIOUS="")  # an unrelated key
    assert_refused(api, CUSTOMERS, after)
    _, unrelated = first_page(api)
    fresh(API_DATA_KEY=current, API_DATA_KEY_PREVIOUS="")
    assert_refused(api, CUSTOMERS, unrelated)


# --- tampering and what a token shows -----------------------------------------------------


def test_every_byte_flipped_is_refused_and_dataverse_sees_nothing(api: Api) -> None:
    _, token = first_page(api)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert 0 < len(raw) < 1000
    with watch(api) as seen:
        for i in range(len(raw)):
            for mask in (0x01, 0xFF):
                flipped = _b64(raw[:i] + bytes([raw[i] ^ mask]) + raw[i + 1 :])
                response = next_page(api, CUSTOMERS, flipped)
                assert_error(response, 400, "invalid_input", mentions=("pageToken",))
    assert seen.dataverse == []


def _base64_fragments(value: bytes) -> set[str]:
    """Substrings that base64 of any text holding `value` must contain, whatever the
    alignment, in both alphabets."""
    found: set[str] = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value).decode("ascii")
        start = -(-8 * shift // 6)  # the first character made of `value` bits only
        end = 8 * (shift + len(value)) // 6  # the last character fully determined
        fragment = encoded[start:end]
        found |= {fragment, fragment.translate(str.maketrans("+/", "-_"))}
    return found


def _encodings(value: str) -> set[str]:
    raw = value.encode("utf-8")
    forms = {value, quote(value), quote_plus(value), quote(quote(value)), raw.hex()}
    forms |= {quote(value, safe="").lower(), quote(quote(value, safe=""), safe="")}
    forms |= _base64_fragments(raw)
    forms |= {f for form in list(forms) for f in _base64_fragments(form.encode())}
    return {f.lower() for f in forms if len(f) >= 6}


def _layers(token: str) -> list[str]:
    """The token's text, and what base64 decoding makes of it (twice)."""
    layers = [token]
    for _ in range(2):
        text = layers[-1]
        try:
            decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            break
        layers.append(decoded.decode("latin-1"))
    return [layer.lower() for layer in layers]


def test_a_token_shows_no_row_value(api: Api) -> None:
    # Customers from the demo data: a first name that at least four of them share.
    (common,) = store_rows(
        api,
        'SELECT firstname FROM "contacts" WHERE firstname IS NOT NULL AND fullname LIKE ? '
        "GROUP BY firstname HAVING count(*) >= 4 ORDER BY firstname LIMIT 1",
        ("% %",),
    )
    path = f"/api/customers?q={quote(common['firstname'])}&pageSize=3"
    items, token = first_page(api, path, app="dealer-sync")
    values = [str(item[k]) for item in items for k in ("fullName", "id")]
    assert all(v and v != "None" for v in values)
    layers = _layers(token)
    for value in values:
        for form in _encodings(value):
            assert not any(form in layer for layer in layers), "a row value shows in the token"
