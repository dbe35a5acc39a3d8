"""Contract, "Downstream token" and the customer row of "Domains": who Dataverse sees.

Delegated calls reach Dataverse as the signed-in user (On-Behalf-Of), so Dataverse applies that
user's own security roles; application calls reach it as the API's application user. The OBO
cache is keyed by the incoming token: one exchange per token, never shared between callers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.api.conftest import Api
from tests.api.contract_helpers import (
    CLIENT_CREDENTIALS,
    client_id,
    downstream,
    fresh_token,
    oid,
    store_rows,
    systemuserid,
    walk,
)


def _ids(pages: list[list[dict[str, object]]]) -> list[object]:
    return [item["id"] for page in pages for item in page]


def test_alice_sees_only_her_own_customers_and_bob_sees_all(api: Api) -> None:
    alice_token, bob_token = api.user_token("alice"), api.user_token("bob")
    with downstream(api) as seen:
        alice = _ids(walk(api, "/api/customers?pageSize=200", token=alice_token))
        bob = _ids(walk(api, "/api/customers?pageSize=200", token=bob_token))

    # The truth, from the emulator's database: Alice (salesperson) reads the contacts she
    # owns; Bob (service agent) reads the whole organisation's.
    owned = store_rows(
        api, 'SELECT contactid FROM "contacts" WHERE _ownerid_value = ?',
        (systemuserid(api, user="alice"),),
    )  # fmt: skip
    everyone = store_rows(api, 'SELECT contactid FROM "contacts"')
    assert sorted(alice) == sorted(r["contactid"] for r in owned)
    assert sorted(bob) == sorted(r["contactid"] for r in everyone)
    assert 0 < len(alice) < len(bob)

    calls = seen.to_table("contacts")
    callers = {c["correlation_id"]: c["caller"] for c in calls}
    assert len(calls) >= 3  # 300+ contacts: Bob needed at least two pages of 200
    assert {(c["oid"], c["systemuserid"]) for c in callers.values()} == {
        (oid(api, "alice"), systemuserid(api, user="alice")),
        (oid(api, "bob"), systemuserid(api, user="bob")),
    }
    assert all("appid" not in c for c in callers.values())


def test_dealer_sync_reads_vehicles_as_the_application_user(api: Api) -> None:
    with downstream(api) as seen:
        response = api.call("GET", "/api/vehicles?pageSize=3", app="dealer-sync")
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 3
    calls = seen.to_table("bos_vehicles")
    assert [c["caller"] for c in calls] == [
        {
            "appid": client_id(api, "central-api"),
            "systemuserid": systemuserid(api, app="central-api"),
        }
    ]
    assert calls[0]["correlation_id"] == response.headers["x-correlation-id"]
    assert seen.exchanges == []  # application calls never go On-Behalf-Of


def test_user_and_application_calls_interleaved_each_reach_dataverse_as_themselves(
    api: Api,
) -> None:
    sequence = [("alice", None), (None, "dealer-sync"), ("bob", None), (None, "dealer-sync"),
                ("alice", None), ("bob", None), (None, "dealer-sync"), ("alice", None)]  # fmt: skip
    expected = {
        "alice": {"oid": oid(api, "alice"), "systemuserid": systemuserid(api, user="alice")},
        "bob": {"oid": oid(api, "bob"), "systemuserid": systemuserid(api, user="bob")},
        "dealer-sync": {
            "appid": client_id(api, "central-api"),
            "systemuserid": systemuserid(api, app="central-api"),
        },
    }
    # Fresh tokens, so the first call of each caller is also its first exchange.
    tokens = {
        "alice": fresh_token(api, "alice"),
        "bob": fresh_token(api, "bob"),
        "dealer-sync": fresh_token(api, None, "dealer-sync"),
    }
    with downstream(api) as seen:
        answers = []
        for user, app in sequence:
            who = user or app or ""
            response = api.call("GET", "/api/customers?pageSize=1", token=tokens[who])
            assert response.status_code == 200, response.text
            answers.append((who, response.headers["x-correlation-id"]))
    by_correlation = {c["correlation_id"]: c["caller"] for c in seen.to_table("contacts")}
    for who, correlation in answers:
        assert by_correlation[correlation] == expected[who], who
    assert sorted(e["caller"]["oid"] for e in seen.exchanges) == sorted(
        [oid(api, "alice"), oid(api, "bob")]
    )


def test_concurrent_callers_never_get_each_others_tokens(api: Api) -> None:
    tokens = {
        "alice": fresh_token(api, "alice"),
        "bob": fresh_token(api, "bob"),
        "dealer-sync": api.app_token("dealer-sync"),
    }
    work = [who for who in tokens for _ in range(8)]

    def call(who: str) -> tuple[str, str]:
        response = api.call("GET", "/api/customers?pageSize=1", token=tokens[who])
        assert response.status_code == 200, response.text
        return who, response.headers["x-correlation-id"]

    with downstream(api) as seen, ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, work))
    by_correlation = {c["correlation_id"]: c["caller"] for c in seen.to_table("contacts")}
    for who, correlation in answers:
        caller = by_correlation[correlation]
        if who == "dealer-sync":
            assert caller.get("appid") == client_id(api, "central-api")
        else:
            assert caller.get("oid") == oid(api, who)
    assert len(seen.exchanges) == 2  # one per user token, even when their first calls race


def test_a_hundred_calls_with_one_token_cost_one_exchange(api: Api) -> None:
    token = fresh_token(api, "bob")
    with downstream(api) as seen:
        for _ in range(100):
            response = api.call("GET", "/api/customers?pageSize=1", token=token)
            assert response.status_code == 200, response.text
    assert [e["caller"]["oid"] for e in seen.exchanges] == [oid(api, "bob")]
    assert seen.exchanges[0]["caller"]["appid"] == client_id(api, "central-api")
    calls = seen.to_table("contacts")
    assert len(calls) == 100
    assert all(c["caller"]["oid"] == oid(api, "bob") for c in calls)


def test_each_token_has_its_own_exchange_even_for_the_same_user(api: Api) -> None:
    first, second = fresh_token(api, "alice"), fresh_token(api, "alice")
    with downstream(api) as seen:
        for token in (first, second, first, second):
            assert api.call("GET", "/api/customers?pageSize=1", token=token).status_code == 200
    assert len(seen.exchanges) == 2


def test_application_tokens_share_the_apis_cached_client_credentials(api: Api) -> None:
    api.call("GET", "/api/vehicles?pageSize=1", app="dealer-sync")  # warm
    other = fresh_token(api, None, "dealer-sync")
    with downstream(api) as seen:
        for token in (api.app_token("dealer-sync"), other):
            assert api.call("GET", "/api/vehicles?pageSize=1", token=token).status_code == 200
    assert seen.grants(CLIENT_CREDENTIALS) == []
    assert seen.exchanges == []
