"""Contract, "Domains", customer row (Dataverse contacts): create, read, update with etags,
search, paging. Alice (salesperson) creates and writes the contacts she owns; Bob (service agent)
reads them all. Row security itself is in test_contract_identity.py."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from tests.api.conftest import Api
from tests.api.contract_helpers import (
    assert_error,
    assert_no_dataverse_names,
    downstream,
    new_customer,
    store_rows,
    unique,
    walk,
)


def test_create_read_back_update_with_etag_and_a_stale_etag_is_412(api: Api) -> None:
    last = unique()
    created = new_customer(
        api, firstName="Ada", lastName=last, email=f"{last}@example.org", phone="+47 11 22 33 44"
    )
    assert created["fullName"] == f"Ada {last}"
    assert created["email"] == f"{last}@example.org"
    assert created["etag"].startswith('W/"')
    assert uuid.UUID(created["id"])
    assert created["createdOn"]
    assert created["modifiedOn"]

    read = api.call("GET", f"/api/customers/{created['id']}", user="alice")
    assert read.status_code == 200, read.text
    assert read.json() == created
    assert read.headers["ETag"] == created["etag"]
    assert_no_dataverse_names(read)

    updated = api.call(
        "PATCH", f"/api/customers/{created['id']}", user="alice",
        json_body={"jobTitle": "Engineer", "phone": None},
        headers={"If-Match": created["etag"]},
    )  # fmt: skip
    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert after["jobTitle"] == "Engineer"
    assert after["phone"] is None
    assert after["etag"] != created["etag"]
    assert updated.headers["ETag"] == after["etag"]
    assert api.call("GET", f"/api/customers/{created['id']}", user="alice").json() == after

    stale = api.call(
        "PATCH", f"/api/customers/{created['id']}", user="alice",
        json_body={"jobTitle": "Overwritten"}, headers={"If-Match": created["etag"]},
    )  # fmt: skip
    assert_error(stale, 412, "precondition_failed")
    assert api.call("GET", f"/api/customers/{created['id']}", user="alice").json() == after


def test_patch_without_if_match_updates_and_never_creates(api: Api) -> None:
    created = new_customer(api)
    response = api.call(
        "PATCH", f"/api/customers/{created['id']}", user="alice", json_body={"city": "Bergen"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["city"] == "Bergen"

    missing = str(uuid.uuid4())
    with downstream(api) as seen:
        for headers in ({}, {"If-Match": '"123"'}, {"If-Match": "*"}):
            answer = api.call(
                "PATCH", f"/api/customers/{missing}", user="alice",
                json_body={"lastName": "Ghost"}, headers=headers,
            )  # fmt: skip
            assert_error(answer, 404, "not_found")
    assert [c["status"] for c in seen.to_table("contacts")] == [404, 404, 404]
    assert store_rows(api, 'SELECT 1 FROM "contacts" WHERE contactid = ?', (missing,)) == []


def test_get_of_a_missing_customer_is_404(api: Api) -> None:
    assert_error(api.call("GET", f"/api/customers/{uuid.uuid4()}", user="bob"), 404, "not_found")


def test_search_q_matches_name_email_and_phone(api: Api) -> None:
    word = unique("Srch")
    by_name = new_customer(api, lastName=f"{word}name")
    by_email = new_customer(api, email=f"{word.lower()}mail@example.org")
    by_phone = new_customer(api, phone=f"+47 {word}")
    other = new_customer(api)

    def found(q: str) -> set[str]:
        response = api.call("GET", f"/api/customers?q={q}&pageSize=200", user="alice")
        assert response.status_code == 200, response.text
        assert_no_dataverse_names(response)
        return {c["id"] for c in response.json()["items"]}

    assert found(word) == {by_name["id"], by_email["id"], by_phone["id"]}
    assert found(word.upper()) == found(word)  # case-insensitive, as Dataverse compares
    assert found(f"{word}name") == {by_name["id"]}
    assert found(f"{word.lower()}mail%40example") == {by_email["id"]}
    assert other["id"] not in found(word)
    # Bob reads every contact, so he finds all of Alice's too; Bob's search is his own.
    response = api.call("GET", f"/api/customers?q={word}", user="bob")
    assert {c["id"] for c in response.json()["items"]} == found(word)


def test_search_text_is_always_literal(api: Api) -> None:
    word = unique("Lit")
    odd = new_customer(api, lastName=f"O'{word}_%[x]&#+=")
    plain = new_customer(api, lastName=f"O{word}ab")

    def found(q: str) -> set[str]:
        response = api.call(
            "GET", f"/api/customers?pageSize=200&q={quote(q, safe='')}", user="alice"
        )
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["items"]}

    assert found(f"O'{word}") == {odd["id"]}
    assert found(f"{word}_%[x]&#+=") == {odd["id"]}
    # LIKE wildcards match only themselves: `_` is not "any one character", `%` not "anything".
    assert found(f"O{word}__") == set()
    assert found(f"O{word}%") == set()
    assert found(f"{word}[a]") == set()
    assert found(f"O{word}ab") == {plain["id"]}
    # OData syntax in the text is text.
    assert found(f"{word}') or true or contains(fullname,'") == set()


def test_paging_defaults_to_50_caps_at_200_and_walks_every_record_once(api: Api) -> None:
    first = api.call("GET", "/api/customers", user="bob")
    assert first.status_code == 200, first.text
    assert len(first.json()["items"]) == 50
    assert first.json()["nextPageToken"]
    assert_no_dataverse_names(first)
    biggest = api.call("GET", "/api/customers?pageSize=200", user="bob")
    assert len(biggest.json()["items"]) == 200

    whole = [c["id"] for page in walk(api, "/api/customers?pageSize=200", user="bob") for c in page]
    pages = walk(api, "/api/customers?pageSize=47", user="bob")
    walked = [c["id"] for page in pages for c in page]
    assert all(len(page) == 47 for page in pages[:-1])
    assert 0 < len(pages[-1]) <= 47
    assert len(walked) == len(set(walked))
    assert sorted(walked) == sorted(whole)


def test_a_page_token_belongs_to_its_own_query(api: Api) -> None:
    word = unique("Pg")
    for _ in range(3):
        new_customer(api, lastName=word)
    searched = api.call("GET", f"/api/customers?q={word}&pageSize=1", user="alice").json()
    token = searched["nextPageToken"]
    assert token
    second = api.call("GET", f"/api/customers?q={word}&pageSize=1&pageToken={token}", user="alice")
    assert second.status_code == 200
    assert second.json()["items"] != searched["items"]
    # The page size may change between pages; the query may not.
    assert (
        api.call(
            "GET", f"/api/customers?q={word}&pageSize=2&pageToken={token}", user="alice"
        ).status_code
        == 200
    )

    with downstream(api) as seen:
        for path in (
            f"/api/customers?q={word}x&pageToken={token}",  # another search
            f"/api/customers?pageToken={token}",  # no search
            f"/api/cases?q={word}&pageToken={token}",  # another domain
            f"/api/customers?q={word}&pageToken={token[:-2]}",  # truncated
            f"/api/customers?q={word}&pageToken={token}A",  # tampered
            f"/api/customers?q={word}&pageToken=not-a-token",
            f"/api/customers?q={word}&pageToken=",
        ):
            assert_error(api.call("GET", path, user="bob"), 400, "invalid_input",
                         mentions=("pageToken",))  # fmt: skip
    assert seen.dataverse == []


def test_bob_may_read_alices_customer_but_not_change_it(api: Api) -> None:
    created = new_customer(api)
    assert api.call("GET", f"/api/customers/{created['id']}", user="bob").status_code == 200
    response = api.call(
        "PATCH", f"/api/customers/{created['id']}", user="bob", json_body={"city": "Oslo"}
    )
    assert_error(response, 403, "backend_forbidden")
