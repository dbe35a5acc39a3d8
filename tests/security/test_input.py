"""Input and OData families O1–O7 of the security catalog, through the API host.

Search text must be searched literally: each case creates a customer whose name holds the
hostile text (after a unique prefix, so nothing seeded matches) and searches for it; exactly
that customer comes back, and the `$filter` that reached Dataverse holds the text as one
escaped literal. Bad input is a 400 naming the field, with nothing sent downstream.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, quote

import azure.functions as func
import pytest

from devstack.host import FunctionsRouter
from tests.api.conftest import Api
from tests.security.downstream import assert_error, watch

SELECT_FILTER_ORDER = {"$select", "$filter", "$orderby"}


def unique() -> str:
    """Letters only, found in no seeded record."""
    return "Sec" + uuid.uuid4().hex[:12].translate(str.maketrans("0123456789", "ghijklmnop"))


def create_customer(api: Api, last_name: str, user: str = "alice") -> str:
    response = api.call("POST", "/api/customers", user=user, json_body={"lastName": last_name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def search(api: Api, text: str, user: str = "alice") -> tuple[list[str], dict[str, str]]:
    """The ids found for `text`, and the one Dataverse query it cost (name -> value)."""
    with watch(api) as seen:
        response = api.call(
            "GET", f"/api/customers?pageSize=200&q={quote(text, safe='')}", user=user
        )
    assert response.status_code == 200, response.text
    contacts = [r for r in seen.dataverse if r["path"].endswith("/contacts")]
    assert len(contacts) == 1, seen.describe()
    sent = dict(parse_qsl(contacts[0]["query"], keep_blank_values=True))
    assert set(sent) == SELECT_FILTER_ORDER, sent  # nothing smuggled in as a parameter
    return [item["id"] for item in response.json()["items"]], sent


def assert_bad_input(
    api: Api, method: str, path: str, field: str, *, body: Any = None, **caller: Any
) -> None:
    caller = caller or {"user": "alice"}
    with watch(api) as seen:
        if body is None:
            response = api.call(method, path, **caller)
        else:
            response = api.call(method, path, json_body=body, **caller)
    message = assert_error(response, 400)["message"]
    assert field in message, message
    assert not seen.dataverse, seen.describe()
    assert not seen.token_calls, seen.describe()


@pytest.fixture(scope="module")
def warm(api: Api) -> Api:
    """Alice's and the app's downstream tokens are cached, so counts are about the request."""
    assert api.call("GET", "/api/customers?pageSize=1", user="alice").status_code == 200
    assert api.call("GET", "/api/vehicles?pageSize=1", app="dealer-sync").status_code == 200
    return api


# --- O1 quote breakout ------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "O'Brien",
        "x') or contains(fullname,'",
        "'') or true or (''",
        "' or 1 eq 1 or '",
        "\\'",
        "a''b",
        "x') and (1 eq 1",
    ],
)
def test_o1_quote_breakout_is_searched_literally(warm: Api, hostile: str) -> None:
    name = unique() + hostile
    created = create_customer(warm, name)
    found, sent = search(warm, name)
    assert found == [created]
    assert "'" + name.replace("'", "''") + "'" in sent["$filter"]


def test_o1_breakout_text_finds_nothing_else(warm: Api) -> None:
    found, _ = search(warm, "zzq') or contains(fullname,'a")
    assert found == []


# --- O2 URL characters ----------------------------------------------------------------------


# What a server that decoded the text once too often (or read `+` as a space) would search for.
MISREAD = {"a+b": "a b", "%27": "'", "%2527": "%27"}


@pytest.mark.parametrize(
    "hostile", ["&$top=5000", "#frag", "?x=1", "a+b", "%27", "%2527", "&q=x", ";$expand=x", "="]
)
def test_o2_url_characters_are_searched_literally(warm: Api, hostile: str) -> None:
    prefix = unique()
    created = create_customer(warm, prefix + hostile)
    if hostile in MISREAD:
        create_customer(warm, prefix + MISREAD[hostile])
    found, _ = search(warm, prefix + hostile)
    assert found == [created]


def test_o2_an_unencoded_ampersand_is_a_separate_parameter(warm: Api) -> None:
    assert_bad_input(warm, "GET", "/api/customers?q=abc&$top=5000", "$top")


# --- O3 LIKE wildcards ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "wildcard_match"),
    [("50%off", "50xyzoff"), ("a_b", "axb"), ("[a-z]", "q"), ("%", "anything")],
)
def test_o3_like_wildcards_are_escaped(warm: Api, literal: str, wildcard_match: str) -> None:
    prefix = unique()
    target = create_customer(warm, prefix + literal)
    other = create_customer(warm, prefix + wildcard_match)
    found, _ = search(warm, prefix + literal)
    assert found == [target]
    assert other not in found


def test_o3_a_lone_percent_does_not_list_everything(warm: Api) -> None:
    created = create_customer(warm, unique() + "100%")
    response = warm.call("GET", "/api/customers?pageSize=200&q=%25", user="alice")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert created in [item["id"] for item in items]
    for item in items:
        assert any("%" in (item[k] or "") for k in ("fullName", "email", "phone")), item


@pytest.mark.parametrize("text", ["_", "__", "[", "]", "[%]", "*", "\\%"])
def test_o3_wildcard_only_searches(warm: Api, text: str) -> None:
    response = warm.call(
        "GET", f"/api/customers?pageSize=200&q={quote(text, safe='')}", user="alice"
    )
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        assert any(text.lower() in (item[k] or "").lower() for k in ("fullName", "email", "phone"))


# --- O4 allowlists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/customers?$filter=lastname eq 'x'", "$filter"),
        ("/api/customers?$select=contactid", "$select"),
        ("/api/customers?$orderby=fullname desc", "$orderby"),
        ("/api/customers?$top=5000", "$top"),
        ("/api/customers?$expand=ownerid", "$expand"),
        ("/api/customers?$skiptoken=x", "$skiptoken"),
        ("/api/customers?orderBy=lastName", "orderBy"),
        ("/api/customers?sort=-lastName", "sort"),
        ("/api/customers?fields=email", "fields"),
        ("/api/customers?status=active", "status"),
        ("/api/customers?Q=x", "Q"),
        ("/api/customers?q=a&q=b", "q"),
        ("/api/cases?status=active or statecode eq 1", "status"),
        ("/api/cases?status=Active", "status"),
        ("/api/cases?status=0", "status"),
        ("/api/cases?customerId=00000000-0000-0000-0000-000000000000 or 1 eq 1", "customerId"),
        ("/api/customers?pageSize=5000", "pageSize"),
        ("/api/customers?pageSize=-1", "pageSize"),
        ("/api/customers?pageSize=1e3", "pageSize"),
        ("/api/customers?pageToken=eyJzIjoiMSJ9", "pageToken"),
    ],
)
def test_o4_query_parameters_only_from_the_allowlist(warm: Api, path: str, field: str) -> None:
    assert_bad_input(warm, "GET", path.replace(" ", "%20"), field)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/vehicles?vin=VF7KSEBU2LZ714622' or '1'='1", "vin"),
        ("/api/vehicles?ownerId=not-a-guid", "ownerId"),
        ("/api/vehicles?registrationNumber=AB'1", "registrationNumber"),
    ],
)
def test_o4_filters_are_typed(warm: Api, path: str, field: str) -> None:
    assert_bad_input(warm, "GET", path.replace(" ", "%20"), field, app="dealer-sync")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lastName": "X", "contactid": str(uuid.uuid4())}, "contactid"),
        ({"lastName": "X", "ownerid": str(uuid.uuid4())}, "ownerid"),
        ({"lastName": "X", "lastname": "y"}, "lastname"),
        ({"lastName": "X", "id": str(uuid.uuid4())}, "id"),
        ({"lastName": "X", "etag": 'W/"1"'}, "etag"),
        ({"lastName": "X", "fullName": "Y"}, "fullName"),
        ({"lastName": "X", "createdOn": "2020-01-01T00:00:00Z"}, "createdOn"),
        ({"lastName": "X", "parentcustomerid_account@odata.bind": "/accounts(x)"}, "body"),
        ({"lastName": "X", "@odata.type": "Microsoft.Dynamics.CRM.systemuser"}, "body"),
        ({"lastName": "X", "__proto__": {}}, "body"),
        ({"lastName": ["X"]}, "lastName"),
        ({"lastName": {"$ne": ""}}, "lastName"),
        ({"lastName": 1}, "lastName"),
        ({}, "lastName"),
    ],
)
def test_o4_body_fields_only_from_the_allowlist(warm: Api, body: Any, field: str) -> None:
    assert_bad_input(warm, "POST", "/api/customers", field, body=body)


def test_o4_case_body_cannot_bind_navigation_properties(warm: Api) -> None:
    body = {
        "title": "x",
        "customerId": str(uuid.uuid4()),
        "customerid_account@odata.bind": "/accounts(00000000-0000-0000-0000-000000000000)",
    }
    assert_bad_input(warm, "POST", "/api/cases", "body", body=body)


# --- O5 size and control characters ---------------------------------------------------------


def test_o5_ten_thousand_characters_in_a_body(warm: Api) -> None:
    assert_bad_input(warm, "POST", "/api/customers", "lastName", body={"lastName": "x" * 10_000})
    assert_bad_input(
        warm, "POST", "/api/cases", "description",
        body={"title": "t", "customerId": str(uuid.uuid4()), "description": "x" * 10_000},
    )  # fmt: skip


def test_o5_ten_thousand_characters_in_the_query(warm: Api, router: FunctionsRouter) -> None:
    """Over HTTP the host refuses a URL over 4 KB itself (414, as the Functions host does);
    the API's own answer, without the host's limit, is a 400."""
    with watch(warm) as seen:
        response = warm.call("GET", "/api/customers?q=" + "x" * 10_000, user="alice")
    assert response.status_code == 414
    assert seen.nothing
    with watch(warm) as seen:
        routed = router.dispatch(
            func.HttpRequest(
                method="GET",
                url=f"{warm.url}/api/customers?q={'x' * 10_000}",
                headers={
                    "Ocp-Apim-Subscription-Key": warm.subscription_key,
                    "Authorization": f"Bearer {warm.user_token('alice')}",
                },
                params={},
                body=b"",
            )
        )
    assert routed.status_code == 400
    assert b"q:" in routed.get_body()
    assert seen.nothing, seen.describe()


def test_o5_search_text_over_the_limit(warm: Api) -> None:
    assert_bad_input(warm, "GET", "/api/customers?q=" + "x" * 101, "q")


CONTROL = ["\x00", "\r\n", "\r", "\n", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\t"]


@pytest.mark.parametrize("char", CONTROL)
def test_o5_control_characters_in_search(warm: Api, char: str) -> None:
    assert_bad_input(warm, "GET", f"/api/customers?q=a{quote(char)}b", "q")


@pytest.mark.parametrize("char", CONTROL)
def test_o5_control_characters_in_body_text(warm: Api, char: str) -> None:
    assert_bad_input(warm, "POST", "/api/customers", "lastName", body={"lastName": f"a{char}b"})


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"])
def test_o5_control_characters_in_multiline_text(warm: Api, char: str) -> None:
    body = {"title": "t", "customerId": str(uuid.uuid4()), "description": f"line{char}"}
    assert_bad_input(warm, "POST", "/api/cases", "description", body=body)


@pytest.mark.parametrize("char", ["\x00", "\r\n"])
def test_o5_control_characters_in_filters(warm: Api, char: str) -> None:
    path = f"/api/vehicles?registrationNumber=AB{quote(char)}12"
    assert_bad_input(warm, "GET", path, "registrationNumber", app="dealer-sync")


@pytest.mark.parametrize("raw", ["%FF", "%C0%AF", "%ED%A0%80"])
def test_o5_invalid_utf8_in_the_query(warm: Api, raw: str) -> None:
    assert_bad_input(warm, "GET", f"/api/customers?q={raw}", "query")


@pytest.mark.parametrize(
    "body",
    [b'{"lastName": "\\ud800"}', b'{"lastName": "a\\u0000"}', b"\xff\xfe", b'{"lastName": NaN}'],
)
def test_o5_odd_json_bodies(warm: Api, body: bytes) -> None:
    with watch(warm) as seen:
        response = warm.call(
            "POST",
            "/api/customers",
            user="alice",
            data=body,
            headers={"Content-Type": "application/json"},
        )
    assert_error(response, 400)
    assert not seen.dataverse


# --- O6 GUIDs -------------------------------------------------------------------------------

GUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
BAD_GUIDS = [
    "{" + GUID + "}",
    "%7B" + GUID + "%7D",
    "urn:uuid:" + GUID,
    GUID.replace("-", ""),
    f"'{GUID}'",
    f"%27{GUID}%27",
    GUID + ")",
    "(" + GUID,
    GUID + "%2F",
    GUID + "%2Fx",
    "%20" + GUID,
    GUID + "%00",
    GUID[:-1],
    GUID + "0",
    GUID.replace("-", "_"),
    "３fa85f64-5717-4562-b3fc-2c963f66afa6",  # a full-width digit
    GUID[:-1] + "g",
    GUID + "' or '1'='1",
    "00000000-0000-0000-0000-00000000000",
]


@pytest.mark.parametrize("bad", BAD_GUIDS)
def test_o6_record_ids(warm: Api, bad: str) -> None:
    assert_bad_input(warm, "GET", f"/api/customers/{bad}", "id")


@pytest.mark.parametrize("bad", BAD_GUIDS[:8])
def test_o6_ids_in_updates_filters_and_bodies(warm: Api, bad: str) -> None:
    assert_bad_input(warm, "PATCH", f"/api/customers/{bad}", "id", body={"lastName": "x"})
    assert_bad_input(warm, "GET", f"/api/cases?customerId={bad}", "customerId")
    decoded = bad.replace("%7B", "{").replace("%7D", "}").replace("%27", "'")
    body = {"title": "t", "customerId": decoded}
    assert_bad_input(warm, "POST", "/api/cases", "customerId", body=body)


def test_o6_canonical_guid_in_either_case_is_accepted(warm: Api) -> None:
    created = create_customer(warm, unique())
    for form in (created, created.upper()):
        response = warm.call("GET", f"/api/customers/{form}", user="alice")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == created


# --- O7 row security ------------------------------------------------------------------------


def _systemuserid(api: Api, user: str) -> str:
    return next(u.systemuserid for u in api.stack.tenant.dataverse_users if u.user == user)


def _owned_by(api: Api, user: str) -> list[dict[str, Any]]:
    store = api.stack.dataverse_app.state.dataverse.store
    rows = store.query(
        'SELECT contactid, fullname FROM "contacts" WHERE _ownerid_value = ? LIMIT 5',
        [_systemuserid(api, user)],
    )
    assert rows
    return list(rows)


@pytest.fixture(scope="module")
def bobs(warm: Api) -> list[dict[str, Any]]:
    return _owned_by(warm, "bob")


def test_o7_alice_cannot_read_bobs_customer_by_id(warm: Api, bobs: list[dict[str, Any]]) -> None:
    alice = warm.stack.tenant.user("alice").oid
    for row in bobs:
        with watch(warm) as seen:
            response = warm.call("GET", f"/api/customers/{row['contactid']}", user="alice")
        body = assert_error(response, 404)  # as if it did not exist (issue 10, item 5)
        assert row["fullname"] not in response.text
        assert body["code"] == "not_found"
        calls = [r for r in seen.dataverse if "/contacts(" in r["path"]]
        assert calls
        assert all(c["caller"]["oid"] == alice for c in calls)


def test_o7_alice_never_lists_or_finds_bobs_customers(
    warm: Api, bobs: list[dict[str, Any]]
) -> None:
    bob_ids = {row["contactid"] for row in bobs}
    found, _ = search(warm, bobs[0]["fullname"])
    assert not bob_ids & set(found)
    response = warm.call("GET", "/api/customers?pageSize=200", user="alice")
    assert response.status_code == 200
    alice_owner = _systemuserid(warm, "alice")
    store = warm.stack.dataverse_app.state.dataverse.store
    for item in response.json()["items"]:
        owner = store.query(
            'SELECT _ownerid_value FROM "contacts" WHERE contactid = ?', [item["id"]]
        )[0]["_ownerid_value"]
        assert owner == alice_owner, item["id"]


def test_o7_alice_cannot_update_bobs_customer(warm: Api, bobs: list[dict[str, Any]]) -> None:
    target = bobs[0]["contactid"]
    response = warm.call(
        "PATCH", f"/api/customers/{target}", user="alice", json_body={"jobTitle": "changed"}
    )
    assert_error(response, 404)
    store = warm.stack.dataverse_app.state.dataverse.store
    row = store.query('SELECT jobtitle FROM "contacts" WHERE contactid = ?', [target])[0]
    assert row["jobtitle"] != "changed"


def test_o7_bob_reads_alices_customer_as_himself(warm: Api) -> None:
    """Bob's role reads every contact: the difference is Dataverse's, per user, not ours."""
    created = create_customer(warm, unique())
    bob = warm.stack.tenant.user("bob").oid
    with watch(warm) as seen:
        response = warm.call("GET", f"/api/customers/{created}", user="bob")
    assert response.status_code == 200, response.text
    calls = [r for r in seen.dataverse if "/contacts(" in r["path"]]
    assert [c["caller"]["oid"] for c in calls] == [bob]


def test_o7_a_user_without_a_dataverse_user_sees_nothing(warm: Api) -> None:
    response = warm.call("GET", "/api/customers?pageSize=5", user="carol")
    assert_error(response, 403)
    assert "@" not in response.text
