"""The Dataverse emulator's Web API over real HTTPS: queries, paging, writes, conditional
operations, and Dataverse's error shapes.

The `dataverse` fixture is shared by the whole session, so tests that write create their own rows
(tagged with a unique last name) and never depend on global counts.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Api, Tokens, assert_error

SOME_ID = "00000000-0000-0000-0000-000000000001"
EVERYONE = {"O'Neill", "50% off", "Under_score", "Brack[et]", "Ødegård", "Plain"}
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def tokens(entra: Any, tenant: Tenant, dataverse: Any) -> Tokens:
    return Tokens(entra.app.state.entra, tenant, dataverse.url)


@pytest.fixture(scope="module")
def as_user(dataverse: Any, ca_bundle: Path, tokens: Tokens) -> Iterator[Callable[[str], Api]]:
    clients: dict[str, Api] = {}

    def make(name: str) -> Api:
        if name not in clients:
            token = tokens.app(name) if name == "central-api" else tokens.user(name)
            clients[name] = Api(dataverse.url, ca_bundle, token)
        return clients[name]

    yield make
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def alice(as_user: Callable[[str], Api]) -> Api:
    return as_user("alice")


@pytest.fixture(scope="module")
def bob(as_user: Callable[[str], Api]) -> Api:
    return as_user("bob")


@pytest.fixture
def tag() -> str:
    """A last name no other test uses."""
    return f"Zq{uuid.uuid4().hex[:10]}"


def an_account(api: Api) -> dict[str, Any]:
    return api.values("accounts?$select=name&$top=1&$orderby=name")[0]


# --- documents and functions ---------------------------------------------------------------------


def test_service_document_lists_entity_sets(alice: Api, dataverse: Any) -> None:
    response = alice.get("")
    assert response.status_code == 200
    assert response.headers["OData-Version"] == "4.0"
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    body = response.json()
    assert body["@odata.context"] == f"{dataverse.url}/api/data/v9.2/$metadata"
    names = {item["name"] for item in body["value"]}
    assert {"contacts", "accounts", "incidents", "bos_vehicles"} <= names


def test_metadata_is_csdl(alice: Api) -> None:
    response = alice.get("$metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/xml")
    assert '<EntityType Name="bos_vehicle">' in response.text
    assert '<NavigationProperty Name="bos_OwnerContactId" Type="mscrm.contact"' in response.text


def test_whoami_names_the_callers_system_user(
    as_user: Callable[[str], Api], tenant: Tenant, dataverse: Any
) -> None:
    for name in ("alice", "bob", "central-api"):
        body = as_user(name).get("WhoAmI").json()
        expected = next(u for u in tenant.dataverse_users if name in (u.user, u.app))
        assert body["UserId"] == expected.systemuserid
        assert GUID.match(body["BusinessUnitId"])
        assert GUID.match(body["OrganizationId"])
        assert body["@odata.context"].endswith("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")


def test_function_with_wrong_method_is_404(alice: Api) -> None:
    assert_error(alice.post("WhoAmI", {}), 404, "", "No HTTP resource was found")


# --- reading -------------------------------------------------------------------------------------


def test_select_returns_selected_columns_key_and_etag(bob: Api, dataverse: Any) -> None:
    response = bob.get("contacts?$select=fullname,emailaddress1&$top=5")
    body = response.json()
    assert body["@odata.context"] == (
        f"{dataverse.url}/api/data/v9.2/$metadata#contacts(fullname,emailaddress1)"
    )
    assert len(body["value"]) == 5
    for record in body["value"]:
        assert set(record) == {"@odata.etag", "fullname", "emailaddress1", "contactid"}
        assert re.fullmatch(r'W/"\d+"', record["@odata.etag"])
        assert GUID.match(record["contactid"])


def test_record_by_key_with_entity_context_and_etag_header(bob: Api, dataverse: Any) -> None:
    first = bob.values("contacts?$select=fullname&$top=1")[0]
    response = bob.get(f"contacts({first['contactid']})?$select=fullname,_parentcustomerid_value")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"] == (
        f"{dataverse.url}/api/data/v9.2/$metadata#contacts(fullname,_parentcustomerid_value)/$entity"
    )
    assert response.headers["ETag"] == body["@odata.etag"] == first["@odata.etag"]
    assert set(body) == {
        "@odata.context",
        "@odata.etag",
        "fullname",
        "_parentcustomerid_value",
        "contactid",
    }


def test_without_select_every_column_comes_back(bob: Api) -> None:
    record = bob.values("incidents?$top=1")[0]
    for column in ("incidentid", "title", "ticketnumber", "_customerid_value", "prioritycode",
                   "statecode", "statuscode", "createdon", "modifiedon", "versionnumber",
                   "_ownerid_value"):  # fmt: skip
        assert column in record
    assert re.fullmatch(r"CAS-\d{5}-[A-Z]\d[A-Z]\d[A-Z]\d", record["ticketnumber"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["createdon"])
    assert record["@odata.etag"] == f'W/"{record["versionnumber"]}"'


def test_unknown_select_column_is_0x80060888(bob: Api) -> None:
    assert_error(
        bob.get("contacts?$select=fullname,Name"),
        400,
        "0x80060888",
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.contact'.",
    )


def test_orderby_top_and_count(bob: Api) -> None:
    body = bob.get(
        "accounts?$select=name,numberofemployees"
        "&$orderby=numberofemployees desc,name asc&$top=7&$count=true"
    ).json()
    rows = body["value"]
    assert len(rows) == 7
    keys = [(-r["numberofemployees"], r["name"].casefold()) for r in rows]
    assert keys == sorted(keys)
    assert body["@odata.count"] >= 7
    assert "@odata.nextLink" not in body


def test_count_is_capped_at_5000_and_dollar_count_segment(bob: Api) -> None:
    total = bob.get("contacts?$count=true&$top=0").json()["@odata.count"]
    response = bob.get("contacts/$count")
    assert response.status_code == 200
    assert int(response.text) == total <= 5000


def test_expand_single_valued_lookup_with_nested_select(bob: Api, dataverse: Any) -> None:
    body = bob.get(
        "incidents?$select=title,_customerid_value"
        "&$expand=customerid_contact($select=fullname),customerid_account($select=name)&$top=40"
    ).json()
    assert body["@odata.context"].endswith(
        "#incidents(title,_customerid_value,customerid_contact(fullname),customerid_account(name))"
    )
    kinds = set()
    for record in body["value"]:
        contact, account = record["customerid_contact"], record["customerid_account"]
        assert (contact is None) != (account is None), record
        related = contact or account
        assert related.get("contactid", related.get("accountid")) == record["_customerid_value"]
        kinds.add("contact" if contact else "account")
        assert "@odata.etag" not in related
    assert kinds == {"contact", "account"}


def test_formatted_values_when_asked(bob: Api) -> None:
    response = bob.get(
        "incidents?$select=prioritycode,_customerid_value&$top=3",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    assert response.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    record = response.json()["value"][0]
    assert record["prioritycode@OData.Community.Display.V1.FormattedValue"] in (
        "High",
        "Normal",
        "Low",
    )
    assert record["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] in (
        "account",
        "contact",
    )
    assert record["_customerid_value@OData.Community.Display.V1.FormattedValue"]


# --- $filter -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people_tag(alice: Api) -> str:
    """Contacts of alice's, all with this last name; first names exercise quotes, wildcards and
    non-ASCII letters."""
    tag = f"Zq{uuid.uuid4().hex[:10]}"
    for name in ["O'Neill", "50% off", "Under_score", "Brack[et]", "Ødegård", "Plain"]:
        alice.create("contacts", {"firstname": name, "lastname": tag})
    return tag


def _names(api: Api, tag: str, expression: str) -> set[str]:
    query = f"contacts?$select=firstname&$filter=lastname eq '{tag}' and ({expression})"
    return {r["firstname"] for r in api.values(quote(query, safe="?$=&(),'"))}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("firstname eq 'O''Neill'", {"O'Neill"}),
        ("contains(firstname,'''')", {"O'Neill"}),
        ("contains(firstname,'%')", EVERYONE),
        ("contains(firstname,'[%]')", {"50% off"}),
        ("contains(firstname,'_')", EVERYONE),
        ("contains(firstname,'r[_]s')", {"Under_score"}),
        ("contains(firstname,'[[]')", {"Brack[et]"}),
        ("startswith(firstname,'[a-c]')", {"Brack[et]"}),
        ("startswith(firstname,'[0-9]')", {"50% off"}),
        ("startswith(firstname,'[^b-z]0')", {"50% off"}),
        ("endswith(firstname,'ll')", {"O'Neill"}),
        ("firstname eq 'plain'", {"Plain"}),
        ("firstname eq 'ØDEGÅRD'", {"Ødegård"}),
        ("startswith(firstname,'ø')", {"Ødegård"}),
        ("firstname ne 'Plain' and not contains(firstname,'a')", EVERYONE - {"Plain", "Brack[et]"}),
        ("(startswith(firstname,'P') or startswith(firstname,'U')) and firstname ne 'Plain'",
         {"Under_score"}),
        ("firstname gt 'P' and firstname lt 'V'", {"Plain", "Under_score"}),
        ("emailaddress1 eq null and firstname eq 'Plain'", {"Plain"}),
        ("fullname eq 'Plain " + "{tag}'", {"Plain"}),
    ],
)  # fmt: skip
def test_filter_semantics(alice: Api, people_tag: str, expression: str, expected: set[str]) -> None:
    assert _names(alice, people_tag, expression.replace("{tag}", people_tag)) == expected


def test_filter_on_lookup_guid_and_through_navigation(alice: Api, tag: str) -> None:
    account = an_account(alice)
    contact = alice.create(
        "contacts",
        {
            "firstname": "Employed",
            "lastname": tag,
            "parentcustomerid_account@odata.bind": f"/accounts({account['accountid']})",
        },
    )
    alice.create("contacts", {"firstname": "Freelance", "lastname": tag})
    for expression in (
        f"_parentcustomerid_value eq {account['accountid']}",
        f"_parentcustomerid_value eq '{account['accountid']}'",
        f"parentcustomerid_account/name eq '{account['name'].replace(chr(39), chr(39) * 2)}'",
    ):
        rows = alice.values(
            f"contacts?$select=firstname,_parentcustomerid_value"
            f"&$filter=lastname eq '{tag}' and {expression}"
        )
        assert [r["contactid"] for r in rows] == [contact], expression
    rows = alice.values(
        f"contacts?$select=firstname"
        f"&$filter=lastname eq '{tag}' and _parentcustomerid_value eq null"
    )
    assert [r["firstname"] for r in rows] == ["Freelance"]


def test_filter_on_choice_and_datetime(bob: Api) -> None:
    resolved = bob.values("incidents?$select=statecode,statuscode&$filter=statecode eq 1")
    assert resolved
    assert all(r["statecode"] == 1 and r["statuscode"] in (5, 1000) for r in resolved)
    recent = bob.values(
        "incidents?$select=createdon&$filter=createdon ge 2026-01-01T00:00:00Z&$orderby=createdon"
    )
    assert recent
    assert all(r["createdon"] >= "2026-01-01T00:00:00Z" for r in recent)
    assert [r["createdon"] for r in recent] == sorted(r["createdon"] for r in recent)


MALFORMED = [
    "$filter=firstname eq 'O'Neill'",
    "$filter=firstname eq 'unterminated",
    "$filter=firstname eq",
    "$filter=",
    "$filter=(firstname eq 'a'",
    "$filter=firstname eq 'a')",
    "$filter=firstname eq 'a' and",
    "$filter=firstname # 'a'",
    "$filter=nosuchcolumn eq 1",
    "$filter=firstname eq 1",
    "$filter=statecode eq 'zero'",
    "$filter=_parentcustomerid_value eq 'not-a-guid'",
    "$filter=firstname",
    "$filter=tolower(firstname) eq 'a'",
    "$filter=nosuchfunction(firstname)",
    "$filter=contains(firstname)",
    "$filter=contains(statecode,'1')",
    "$filter=statecode add 1 eq 2",
    "$filter=statecode eq 99999999999999999999999",
    "$filter=createdon gt 2024-02-31",
    "$filter=parentcustomerid_account/nosuch eq 'x'",
    "$filter=parentcustomerid_account eq null",
    "$filter=\x00",
    "$filter=" + "not " * 3000 + "statecode eq 0",
    "$filter=" + "x" * 9000,
    "$filter=Microsoft.Dynamics.CRM.Today(PropertyName='createdon')",
    "$filter=contact_customer_accounts/any(a:a/name eq 'x')",
    "$select=",
    "$select=fullname,,lastname",
    "$select=fullname/x",
    "$select=parentcustomerid",
    "$select=fullname&$select=lastname",
    "$orderby=nosuch",
    "$orderby=fullname sideways",
    "$orderby=fullname asc desc",
    "$top=-1",
    "$top=abc",
    "$top=1.5",
    "$top=²",
    "$count=yes",
    "$skip=10",
    "$skiptoken=garbage",
    '$skiptoken=<cookie pagenumber="2" pagingcookie="AAAA" istracking="False" />',
    "$expand=nosuch",
    "$expand=parentcustomerid_account($select=nosuch)",
    "$expand=parentcustomerid_account($filter=name eq 'x')",
    "$expand=parentcustomerid_account($select=name",
    "$expand=parentcustomerid_account($expand=primarycontactid)",
    "$expand=*",
    "$apply=groupby((statecode))",
    "$nonsense=1",
]


@pytest.mark.parametrize("query", MALFORMED)
def test_malformed_queries_are_4xx_or_501_never_500(bob: Api, query: str) -> None:
    response = bob.get(f"contacts?{quote(query, safe='$=&')}")
    assert response.status_code in (400, 501), (query, response.status_code, response.text)
    body = response.json()
    assert set(body["error"]) == {"code", "message"}
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "query",
    [
        "$filter=" + "(" * 3000 + "statecode eq 0" + ")" * 3000,
        "$filter=" + " and ".join(["statecode eq 0"] * 500),
        "$filter=" + " or ".join(f"lastname eq 'n{i}'" for i in range(300)),
        "$filter=firstname eq '\u202e\u0000'",
        "$filter=contains(firstname,'%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%')",
        "$select=" + ",".join(["fullname"] * 500),
    ],
    ids=["deep-parentheses", "long-and", "long-or", "control-characters", "many-wildcards",
         "repeated-select"],
)  # fmt: skip
def test_big_but_valid_queries_answer(bob: Api, query: str) -> None:
    response = bob.get(f"contacts?{quote(query, safe='$=&')}")
    assert response.status_code == 200, response.text[:300]


def test_unterminated_literal_message_as_dataverse(bob: Api) -> None:
    assert_error(
        bob.get("contacts?$filter=" + quote("lastname eq 'O'Bryan'")),
        400,
        "0x80060888",
        "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''.",
    )


def test_incompatible_types_message(bob: Api) -> None:
    assert_error(
        bob.get("contacts?$filter=" + quote("statecode eq 'x'")),
        400,
        "0x80060888",
        "A binary operator with incompatible types was detected. Found operand types "
        "'Edm.Int32' and 'Edm.String' for operator kind 'Equal'.",
    )


def test_skip_is_refused_as_dataverse_refuses_it(bob: Api) -> None:
    assert_error(bob.get("contacts?$skip=5"), 400, "0x80060888", "Skip Clause is not supported")


# --- paging --------------------------------------------------------------------------------------


def _all_pages(api: Api, path: str, page_size: int) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    pages = 0
    url: str | None = path
    while url:
        response = api.get(url, headers={"Prefer": f"odata.maxpagesize={page_size}"})
        assert response.status_code == 200, response.text
        assert response.headers["Preference-Applied"] == f"odata.maxpagesize={page_size}"
        body = response.json()
        assert len(body["value"]) <= page_size
        rows += body["value"]
        pages += 1
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(api.url + "/api/data/v9.2/contacts?")
            assert "$skiptoken=" in url
    return rows, pages


@pytest.mark.parametrize(
    "orderby",
    ["", "&$orderby=jobtitle desc,lastname", "&$orderby=lastname,firstname desc",
     "&$orderby=createdon"],
)  # fmt: skip
def test_paging_walks_every_row_once(bob: Api, orderby: str) -> None:
    path = f"contacts?$select=firstname,lastname,jobtitle{orderby}"
    everything = bob.values(path)
    paged, pages = _all_pages(bob, path, 37)
    assert [r["contactid"] for r in paged] == [r["contactid"] for r in everything]
    assert len({r["contactid"] for r in paged}) == len(paged)
    assert pages == -(-len(everything) // 37) or pages == len(everything) // 37 + 1


def test_paging_is_stable_under_inserts(alice: Api, tag: str) -> None:
    for i in range(10):
        alice.create("contacts", {"firstname": f"P{i:02d}", "lastname": tag})
    path = f"contacts?$select=firstname&$filter=lastname eq '{tag}'&$orderby=firstname"
    first = alice.get(path, headers={"Prefer": "odata.maxpagesize=4"}).json()
    alice.create("contacts", {"firstname": "P00a", "lastname": tag})  # sorts before the cursor
    alice.create("contacts", {"firstname": "P99", "lastname": tag})  # sorts after it
    rest, _ = _all_pages(alice, first["@odata.nextLink"], 4)
    seen = [r["firstname"] for r in first["value"] + rest]
    assert seen == [f"P{i:02d}" for i in range(10)] + ["P99"]


def test_no_preference_means_pages_of_5000_and_no_echo(bob: Api) -> None:
    response = bob.get("contacts?$select=fullname")
    assert "Preference-Applied" not in response.headers
    assert "@odata.nextLink" not in response.json()
    response = bob.get("contacts?$select=fullname", headers={"Prefer": "odata.maxpagesize=9000"})
    assert "Preference-Applied" not in response.headers


def test_top_is_ignored_when_paging(bob: Api) -> None:
    response = bob.get(
        "contacts?$select=fullname&$top=3", headers={"Prefer": "odata.maxpagesize=2"}
    )
    body = response.json()
    assert len(body["value"]) == 2
    assert "@odata.nextLink" in body


def test_tampered_skiptoken_is_400(bob: Api) -> None:
    link = bob.get("contacts?$select=fullname", headers={"Prefer": "odata.maxpagesize=2"}).json()[
        "@odata.nextLink"
    ]
    tampered = link.replace("pagingcookie%3D%22", "pagingcookie%3D%22x")
    assert_error(bob.get(tampered), 400, "0x80060888", "$skiptoken")


# --- create --------------------------------------------------------------------------------------


def test_create_is_204_with_entity_id(alice: Api, dataverse: Any, tag: str) -> None:
    response = alice.post("contacts", {"firstname": "Kari", "lastname": tag})
    assert response.status_code == 204
    assert response.content == b""
    entity_id = response.headers["OData-EntityId"]
    assert re.fullmatch(
        re.escape(f"{dataverse.url}/api/data/v9.2/contacts(") + r"[0-9a-f-]{36}\)", entity_id
    )
    created = alice.get(entity_id + "?$select=fullname,_ownerid_value,statecode").json()
    assert created["fullname"] == f"Kari {tag}"
    assert created["statecode"] == 0
    assert created["_ownerid_value"] == "f775ea63-9e01-4b35-8d49-8af1a935d228"  # alice's


def test_create_with_representation_is_201_honouring_select(alice: Api, tag: str) -> None:
    response = alice.post(
        "contacts?$select=fullname,emailaddress1",
        {"firstname": "Per", "lastname": tag, "emailaddress1": "per@demo.example"},
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "return=representation"
    body = response.json()
    assert body["@odata.context"].endswith("#contacts(fullname,emailaddress1)/$entity")
    assert set(body) == {"@odata.context", "@odata.etag", "fullname", "emailaddress1", "contactid"}
    assert body["fullname"] == f"Per {tag}"


def test_create_with_lookup_binds(alice: Api, bob: Api, tag: str) -> None:
    account = an_account(alice)
    parent = alice.create("contacts", {"firstname": "Parent", "lastname": tag})
    child = alice.create(
        "contacts",
        {"lastname": tag, "parentcustomerid_contact@odata.bind": f"/contacts({parent})"},
    )
    row = alice.get(f"contacts({child})?$select=_parentcustomerid_value").json()
    assert row["_parentcustomerid_value"] == parent
    alice.patch(
        f"contacts({child})",
        {"parentcustomerid_account@odata.bind": f"accounts({account['accountid']})"},
    )
    row = alice.get(
        f"contacts({child})?$select=_parentcustomerid_value"
        "&$expand=parentcustomerid_account($select=name),parentcustomerid_contact($select=fullname)"
    ).json()
    assert row["_parentcustomerid_value"] == account["accountid"]
    assert row["parentcustomerid_account"]["name"] == account["name"]
    assert row["parentcustomerid_contact"] is None
    vehicle_owner = bob.values("contacts?$select=fullname&$top=1")[0]["contactid"]
    assert vehicle_owner


def test_bind_to_missing_record_is_404(alice: Api, tag: str) -> None:
    missing = str(uuid.uuid4())
    assert_error(
        alice.post(
            "contacts",
            {"lastname": tag, "parentcustomerid_account@odata.bind": f"/accounts({missing})"},
        ),
        404,
        "0x80040217",
        f"account With Id = {missing} Does Not Exist",
    )


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"lastname": "x", "nosuch": 1}, "0x80048d19",
         "Invalid property 'nosuch' was found in entity 'Microsoft.Dynamics.CRM.contact'"),
        ({"parentcustomerid@odata.bind": f"/accounts({SOME_ID})"}, "0x80048d19",
         "An undeclared property 'parentcustomerid'"),
        ({"parentcustomerid_account@odata.bind": f"/contacts({SOME_ID})"}, "0x80048d19",
         "cannot be bound"),
        ({"parentcustomerid_account@odata.bind": "/accounts(nope)"}, "0x80048d19",
         "Error in query syntax"),
        ({"_parentcustomerid_value": SOME_ID}, "0x80048d19", "Use Navigation properties instead"),
        ({"firstname": 42}, "0x80048d19",
         "Cannot convert the literal '42' to the expected type 'Edm.String'"),
        ({"statecode": "0"}, "0x80048d19", "'Edm.Int32'"),
        ({"statecode": 7}, "0x80044331", "outside the valid range"),
        ({"firstname": "x" * 51}, "0x80044331", "exceeded the maximum allowed length of '50'"),
        ({"statecode": 0, "statuscode": 2}, "0x80040203", "is not a valid status code"),
    ],
)  # fmt: skip
def test_bad_bodies_have_dataverse_errors(
    alice: Api, body: dict[str, Any], code: str, fragment: str
) -> None:
    assert_error(alice.post("contacts", body), 400, code, fragment)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b"null", b'"text"', b'{"firstname": "a", "firstname": "b"}', b"\xff\xfe",
     b'{"revenue": NaN}', b"[" * 5000 + b"]" * 5000],
)  # fmt: skip
def test_unreadable_bodies_are_400(alice: Api, raw: bytes) -> None:
    response = alice.request(
        "POST", "contacts", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "0x80048d19", "Error identified in Payload")


def test_server_owned_columns_are_ignored(alice: Api, tag: str) -> None:
    contact = alice.create(
        "contacts",
        {
            "firstname": "A",
            "lastname": tag,
            "fullname": "Forged",
            "createdon": "2001-01-01T00:00:00Z",
        },
    )
    row = alice.get(f"contacts({contact})?$select=fullname,createdon").json()
    assert row["fullname"] == f"A {tag}"
    assert not row["createdon"].startswith("2001")


def test_client_chosen_id_and_duplicate(alice: Api, tag: str) -> None:
    chosen = str(uuid.uuid4())
    assert alice.create("contacts", {"contactid": chosen, "lastname": tag}) == chosen
    assert_error(
        alice.post("contacts", {"contactid": chosen, "lastname": tag}),
        412,
        "0x80040237",
        "A record with matching key values already exists.",
    )


# --- update, upsert, optimistic concurrency ------------------------------------------------------


def test_patch_updates_and_bumps_the_row_version(alice: Api, tag: str) -> None:
    contact = alice.create("contacts", {"firstname": "Old", "lastname": tag})
    before = alice.get(f"contacts({contact})?$select=firstname").json()
    response = alice.patch(f"contacts({contact})", {"firstname": "New"})
    assert response.status_code == 204
    assert response.headers["OData-EntityId"].endswith(f"contacts({contact})")
    after = alice.get(f"contacts({contact})?$select=fullname,versionnumber,modifiedon").json()
    assert after["fullname"] == f"New {tag}"
    assert int(after["@odata.etag"][3:-1]) > int(before["@odata.etag"][3:-1])


def test_patch_with_representation_is_200(alice: Api, tag: str) -> None:
    contact = alice.create("contacts", {"firstname": "Rep", "lastname": tag})
    response = alice.patch(
        f"contacts({contact})?$select=firstname",
        {"firstname": "Rep2"},
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 200
    assert response.json()["firstname"] == "Rep2"


def test_patch_on_missing_key_creates(alice: Api, tag: str) -> None:
    new = str(uuid.uuid4())
    response = alice.patch(f"contacts({new})", {"firstname": "Upserted", "lastname": tag})
    assert response.status_code == 204
    assert alice.get(f"contacts({new})?$select=firstname").json()["firstname"] == "Upserted"


def test_if_match_star_is_update_only(alice: Api, tag: str) -> None:
    missing = str(uuid.uuid4())
    assert_error(
        alice.patch(f"contacts({missing})", {"lastname": tag}, headers={"If-Match": "*"}),
        404,
        "0x80040217",
        f"contact With Id = {missing} Does Not Exist",
    )
    assert alice.get(f"contacts({missing})").status_code == 404
    existing = alice.create("contacts", {"lastname": tag})
    assert (
        alice.patch(
            f"contacts({existing})", {"firstname": "Y"}, headers={"If-Match": "*"}
        ).status_code
        == 204
    )


def test_if_none_match_star_is_create_only(alice: Api, tag: str) -> None:
    existing = alice.create("contacts", {"lastname": tag})
    assert_error(
        alice.patch(f"contacts({existing})", {"firstname": "Z"}, headers={"If-None-Match": "*"}),
        412,
        "0x80040237",
        "A record with matching key values already exists.",
    )
    new = str(uuid.uuid4())
    assert (
        alice.patch(
            f"contacts({new})", {"lastname": tag}, headers={"If-None-Match": "*"}
        ).status_code
        == 204
    )


def test_stale_etag_is_412_and_current_etag_wins(alice: Api, tag: str) -> None:
    contact = alice.create("contacts", {"firstname": "V1", "lastname": tag})
    etag = alice.get(f"contacts({contact})?$select=firstname").json()["@odata.etag"]
    assert (
        alice.patch(
            f"contacts({contact})", {"firstname": "V2"}, headers={"If-Match": etag}
        ).status_code
        == 204
    )
    stale = alice.patch(f"contacts({contact})", {"firstname": "V3"}, headers={"If-Match": etag})
    assert_error(
        stale,
        412,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )
    assert_error(
        alice.delete(f"contacts({contact})", headers={"If-Match": etag}), 412, "0x80060882"
    )
    assert alice.get(f"contacts({contact})?$select=firstname").json()["firstname"] == "V2"


def test_conditional_get_is_304_when_unchanged(alice: Api, tag: str) -> None:
    contact = alice.create("contacts", {"lastname": tag})
    etag = alice.get(f"contacts({contact})").headers["ETag"]
    unchanged = alice.get(f"contacts({contact})", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    alice.patch(f"contacts({contact})", {"firstname": "Changed"})
    assert alice.get(f"contacts({contact})", headers={"If-None-Match": etag}).status_code == 200


# --- delete --------------------------------------------------------------------------------------


def test_delete_then_404(alice: Api, tag: str) -> None:
    contact = alice.create("contacts", {"lastname": tag})
    response = alice.delete(f"contacts({contact})")
    assert response.status_code == 204
    message = f"contact With Id = {contact} Does Not Exist"
    assert_error(alice.get(f"contacts({contact})"), 404, "0x80040217", message)
    assert_error(alice.delete(f"contacts({contact})"), 404, "0x80040217", message)


# --- addressing errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code", "fragment"),
    [
        ("Contacts", 404, "0x8006088a", "Resource not found for the segment 'Contacts'."),
        ("nosuch(00000000-0000-0000-0000-000000000001)", 404, "0x8006088a", "'nosuch'"),
        ("contacts(abc)", 400, "0x80060888", "Bad Request - Error in query syntax."),
        ("contacts({00000000-0000-0000-0000-000000000001})", 400, "0x80060888", "syntax"),
        ("contacts(00000000000000000000000000000001)", 400, "0x80060888", "syntax"),
        ("contacts('00000000-0000-0000-0000-000000000001')", 400, "0x80060888", "syntax"),
        ("contacts(emailaddress1='x@y')", 400, "0x80060888", "alternate key"),
        ("contacts(00000000-0000-0000-0000-000000000001)/nosuch", 404, "0x8006088a", "'nosuch'"),
        ("contacts/nosuch", 404, "0x8006088a", "'nosuch'"),
    ],
)  # fmt: skip
def test_addressing_errors(alice: Api, path: str, status: int, code: str, fragment: str) -> None:
    assert_error(alice.get(path), status, code, fragment)


def test_key_with_property_name_and_single_property(bob: Api) -> None:
    row = bob.values("contacts?$select=lastname&$top=1")[0]
    by_name = bob.get(f"contacts(contactid={row['contactid']})?$select=lastname").json()
    assert by_name["lastname"] == row["lastname"]
    prop = bob.get(f"contacts({row['contactid']})/lastname").json()
    assert prop["value"] == row["lastname"]


def test_wrong_methods(alice: Api) -> None:
    assert_error(
        alice.delete("contacts"), 405, "0x80060888", "does not support http method 'DELETE'"
    )
    assert_error(alice.patch("contacts", {}), 405, "0x80060888")
    assert (
        alice.request("PUT", "contacts(00000000-0000-0000-0000-000000000001)", json={}).status_code
        == 501
    )


def test_outside_the_api_root_is_404(alice: Api) -> None:
    assert_error(
        alice.get("https://" + alice.url.removeprefix("https://") + "/nope"), 404, "0x8006088a"
    )


# --- incidents: auto-number, required customer, state rules ---------------------------------------


def test_incident_lifecycle(bob: Api, alice: Api, tag: str) -> None:
    customer = alice.create("contacts", {"firstname": "Case", "lastname": tag})
    created = bob.post(
        "incidents?$select=ticketnumber,statecode,statuscode",
        {"title": f"Bremser {tag}", "customerid_contact@odata.bind": f"/contacts({customer})"},
        headers={"Prefer": "return=representation"},
    )
    assert created.status_code == 201, created.text
    case = created.json()
    assert re.fullmatch(r"CAS-\d{5}-[A-Z]\d[A-Z]\d[A-Z]\d", case["ticketnumber"])
    assert (case["statecode"], case["statuscode"]) == (0, 1)
    case_id = case["incidentid"]
    assert_error(
        bob.patch(f"incidents({case_id})", {"statecode": 1}),
        400,
        "0x80040203",
        "use the CloseIncidentRequest message instead",
    )
    assert bob.patch(f"incidents({case_id})", {"statuscode": 2}).status_code == 204
    state = bob.get(f"incidents({case_id})?$select=statecode,statuscode").json()
    assert (state["statecode"], state["statuscode"]) == (0, 2)
    resolution = {
        "IncidentResolution": {
            "subject": "Byttet klosser",
            "incidentid@odata.bind": f"/incidents({case_id})",
        },
        "Status": 5,
    }
    assert bob.post("CloseIncident", resolution).status_code == 204
    state = bob.get(f"incidents({case_id})?$select=statecode,statuscode").json()
    assert (state["statecode"], state["statuscode"]) == (1, 5)
    assert_error(bob.post("CloseIncident", resolution), 400, "0x80040203")
    assert bob.patch(f"incidents({case_id})", {"statecode": 0}).status_code == 204  # reactivate


def test_incident_needs_a_customer(bob: Api) -> None:
    assert_error(
        bob.post("incidents", {"title": "Uten kunde"}),
        400,
        "0x80040203",
        "You should specify a parent contact or account.",
    )
