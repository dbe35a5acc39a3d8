"""The Dataverse emulator's parts in-process: SQL Server LIKE, `$filter` translation, keyset
paging, service protection limits (with a fake clock), the key cache, the store across restarts,
the demo data, and the error-to-HTTP mapping.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from devstack import seed
from devstack.dataverse import Dataverse, errors, http
from devstack.dataverse.auth import KeyCache
from devstack.dataverse.filters import compile_filter
from devstack.dataverse.limits import ServiceProtection
from devstack.dataverse.options import OrderBy
from devstack.dataverse.paging import after_sql, order_columns, order_sql
from devstack.dataverse.schema import Column, table
from devstack.dataverse.sqlserver import compare_ci, sql_server_like
from devstack.dataverse.store import Store
from devstack.dataverse.tables import CONTACTS, TABLES
from devstack.tenant import Tenant, load_tenant
from tests.clock import ManualClock

# --- SQL Server LIKE -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "pattern", "matches"),
    [
        ("Hansen", "hans%", True),
        ("Hansen", "%SEN", True),
        ("Hansen", "H_nsen", True),
        ("Hansen", "H_sen", False),
        ("50% off", "%[%]%", True),
        ("50 off", "%[%]%", False),
        ("a_b", "a[_]b", True),
        ("axb", "a[_]b", False),
        ("Brack[et]", "%[[]%", True),
        ("Brack]", "%]", True),
        ("Berg", "[a-c]%", True),
        ("Dahl", "[a-c]%", False),
        ("Dahl", "[^a-c]%", True),
        ("Berg", "[^a-c]%", False),
        ("x", "[xyz]", True),
        ("Åse", "åse", True),
        ("ÅSE", "%s_", True),
        ("Ødegård", "%gård", True),
        ("Odegard", "Ødegård", False),  # accent-sensitive
        ("a", "[a", False),  # unclosed bracket matches nothing
        ("a\nb", "a%b", True),
        ("", "%", True),
        ("abc", "", False),
    ],
)
def test_sql_server_like(value: str, pattern: str, matches: bool) -> None:
    assert sql_server_like(value, pattern) == int(matches)


def test_like_with_null_is_null() -> None:
    assert sql_server_like(None, "%") is None
    assert sql_server_like("x", None) is None


def test_case_insensitive_collation() -> None:
    assert compare_ci("berg", "Berg") == 0
    assert compare_ci("Aas", "berg") < 0
    assert compare_ci("Øye", "øye") == 0


# --- $filter -------------------------------------------------------------------------------------


def test_filter_binds_every_literal() -> None:
    compiled = compile_filter(
        "firstname eq 'x''; DROP TABLE contacts; --' or contains(lastname,'%'')--')",
        CONTACTS,
        TABLES,
    )
    assert "DROP" not in compiled.sql
    assert compiled.params == ["x'; DROP TABLE contacts; --", "%%')--%"]


def test_filter_guid_literal_is_normalised() -> None:
    compiled = compile_filter(
        "_parentcustomerid_value eq 8D2A2D6C-3E0B-4F59-9D1C-00000000000A", CONTACTS, TABLES
    )
    assert compiled.params == ["8d2a2d6c-3e0b-4f59-9d1c-00000000000a"]


_FUZZ_TOKENS = [
    "firstname", "lastname", "statecode", "_parentcustomerid_value",
    "parentcustomerid_account/name",
    "eq", "ne", "gt", "and", "or", "not", "(", ")", ",", "'", "''", "'a'", "0", "-1", "1.5",
    "null", "true", "contains(", "startswith(", "endswith(", "tolower(", "in", "add", " ", "/",
    "2024-01-01", "2024-01-01T00:00:00Z", "8d2a2d6c-3e0b-4f59-9d1c-00000000000a", "any(x:",
    "$it", "@p1", "[", "]", "%", "\\", "\x00", "é", "Microsoft.Dynamics.CRM.Today(",
]  # fmt: skip


def test_fuzzed_filters_never_escape_the_error_tree() -> None:
    rng = random.Random(1234)
    outcomes: dict[object, int] = {}
    for _ in range(3000):
        words = [rng.choice(_FUZZ_TOKENS) for _ in range(rng.randrange(1, 9))]
        text = (" " if rng.random() < 0.5 else "").join(words)
        outcome = _compile_outcome(text)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert set(outcomes) <= {"ok", 400, 501}, outcomes
    assert outcomes[400] > 1000


def _compile_outcome(text: str) -> object:
    """ "ok", or the status of the `DataverseError`; anything else escapes and fails the test."""
    try:
        compile_filter(text, CONTACTS, TABLES)
    except errors.DataverseError as exc:
        return exc.status
    return "ok"


# --- keyset paging -------------------------------------------------------------------------------

PAGED = table(
    entity_set="paged",
    logical_name="paged",
    schema_name="Paged",
    object_type_code=99999,
    primary_name="name",
    columns=(Column("name", "string", 50), Column("rank", "int")),
    state=None,
)


def test_keyset_pages_match_one_big_ordered_query(tmp_path: Path) -> None:
    store = Store(tmp_path / "paged.sqlite", {"paged": PAGED})
    rng = random.Random(7)
    for i in range(120):
        store.insert(
            PAGED,
            {
                "pagedid": f"00000000-0000-0000-0000-{i:012d}",
                "name": rng.choice(["Berg", "berg", "Aas", "Øye", None]),
                "rank": rng.choice([1, 2, 3, None]),
            },
        )
    for orderby in (
        [OrderBy("name")],
        [OrderBy("name", descending=True), OrderBy("rank")],
        [OrderBy("rank", descending=True), OrderBy("name", descending=True)],
        [OrderBy("pagedid", descending=True)],
    ):
        columns = order_columns(PAGED, orderby)
        order = order_sql(PAGED, columns)
        everything = store.query(f"SELECT * FROM paged t ORDER BY {order}")
        seen: list[dict[str, Any]] = []
        where, params = "1", []
        while True:
            page = store.query(
                f"SELECT * FROM paged t WHERE {where} ORDER BY {order} LIMIT 7",
                params,
            )
            if not page:
                break
            seen += page
            last = page[-1]
            where, params = after_sql(PAGED, columns, [last[c.property] for c in columns])
        assert [r["pagedid"] for r in seen] == [r["pagedid"] for r in everything], orderby
    store.close()


# --- service protection limits -------------------------------------------------------------------


def test_request_limit_slides_with_the_window() -> None:
    clock = ManualClock()
    limits = ServiceProtection(clock)
    limits.configure({"requests": 2, "window_seconds": 10})
    for _ in range(2):
        limits.enter("u")
        limits.leave("u", 1.0)
        clock.now += 3
    with pytest.raises(errors.Throttled) as caught:
        limits.enter("u")
    assert caught.value.code == "0x80072322"
    assert caught.value.retry_after == 4  # the first request leaves the window at t=1010
    limits.enter("other")  # per caller
    clock.now += 4
    limits.enter("u")


def test_execution_time_limit_and_retry_after() -> None:
    clock = ManualClock()
    limits = ServiceProtection(clock)
    limits.configure({"execution_ms": 100, "window_seconds": 300})
    limits.enter("u")
    limits.leave("u", 60)
    clock.now += 100
    limits.enter("u")
    limits.leave("u", 60)
    with pytest.raises(errors.Throttled) as caught:
        limits.enter("u")
    assert caught.value.code == "0x80072321"
    assert caught.value.retry_after == 200  # once the first 60 ms leave the window
    assert "exceeded limit of 100 milliseconds" in caught.value.message


def test_concurrency_limit() -> None:
    limits = ServiceProtection()
    limits.configure({"concurrent": 2})
    limits.enter("u")
    limits.enter("u")
    with pytest.raises(errors.Throttled) as caught:
        limits.enter("u")
    assert caught.value.code == "0x80072326"
    assert caught.value.message == "Number of concurrent requests exceeded the limit of 2."
    limits.leave("u", 1)
    limits.enter("u")


def test_concurrency_limit_under_real_threads() -> None:
    limits = ServiceProtection()
    limits.configure({"concurrent": 3})
    all_inside = threading.Barrier(4)  # three workers and this thread
    release = threading.Event()

    def worker() -> None:
        limits.enter("u")
        all_inside.wait()
        release.wait()
        limits.leave("u", 1)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    all_inside.wait()
    with pytest.raises(errors.Throttled) as caught:
        limits.enter("u")
    release.set()
    for t in threads:
        t.join()
    assert caught.value.code == "0x80072326"
    assert limits.snapshot()["callers"]["u"]["concurrent"] == 0


def test_limit_headers_and_reset() -> None:
    limits = ServiceProtection(ManualClock())
    limits.enter("u")
    limits.leave("u", 540)
    assert limits.headers("u") == {
        "x-ms-ratelimit-burst-remaining-xrm-requests": "5999",
        "x-ms-ratelimit-time-remaining-xrm-requests": "1,199.46",
        "x-ms-dop-hint": "4",
    }
    limits.configure({"requests": 1})
    limits.reset()
    assert limits.snapshot()["thresholds"]["requests"] == 6000
    assert limits.snapshot()["callers"] == {}


@pytest.mark.parametrize(
    "changes",
    [{"requests": 0}, {"requests": -1}, {"requests": "1"}, {"x": 1}, {"concurrent": True}],
)
def test_bad_limit_settings(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ServiceProtection().configure(changes)


# --- signing-key cache ---------------------------------------------------------------------------


def _jwk(kid: str) -> dict[str, Any]:
    from devstack.pki import SigningKey

    jwk = SigningKey.generate().jwk()
    return {**jwk, "kid": kid}


def test_key_cache_refetches_unknown_kids_at_most_once_per_interval() -> None:
    clock = ManualClock()
    documents = [{"keys": [_jwk("a")]}, {"keys": [_jwk("a"), _jwk("b")]}]
    calls: list[int] = []

    def fetch() -> dict[str, Any]:
        calls.append(1)
        return documents[min(len(calls) - 1, 1)]

    cache = KeyCache(fetch, refresh_interval=10, clock=clock)
    assert cache.key("a") is not None
    assert cache.key("b") is None  # unknown, but fetched a moment ago
    assert cache.key("zzz") is None
    assert len(calls) == 1
    clock.now += 10
    assert cache.key("b") is not None
    assert len(calls) == 2


def test_key_cache_keeps_last_good_keys_when_fetch_fails() -> None:
    clock = ManualClock()
    good = {"keys": [_jwk("a")]}
    answers: list[Any] = [good, ValueError("boom"), {"keys": []}, {"nope": 1}]

    def fetch() -> dict[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        result: dict[str, Any] = answer
        return result

    cache = KeyCache(fetch, refresh_interval=1, clock=clock)
    assert cache.key("a") is not None
    for _ in range(3):
        clock.now += 1
        assert cache.key("new") is None
        assert cache.key("a") is not None


# --- store, restarts, demo data ------------------------------------------------------------------


def _dataverse(db: Path, tenant: Tenant, *, seed_data: bool = True) -> Dataverse:
    return Dataverse(
        tenant,
        base_url="https://localhost:1",
        entra_url="https://localhost:2",
        db_path=db,
        ca_bundle=db.parent / "none.pem",
        seed=seed_data,
    )


def test_data_survives_a_restart_and_is_seeded_once(tmp_path: Path) -> None:
    tenant = load_tenant(dataverse_url="https://localhost:1")
    db = tmp_path / "dv.sqlite"
    first = _dataverse(db, tenant)
    counts = {name: first.store.count(TABLES[name]) for name in seed.SEED_TABLES}
    assert counts == {name: tenant.seed.counts[name] for name in seed.SEED_TABLES}
    first.store.delete(
        TABLES["contacts"],
        first.store.query("SELECT contactid FROM contacts LIMIT 1")[0]["contactid"],
    )
    version = first.store.next_version()
    first.store.close()
    second = _dataverse(db, tenant)
    assert second.store.count(TABLES["contacts"]) == counts["contacts"] - 1
    assert second.store.next_version() > version
    assert second.reseed()["contacts"] == counts["contacts"]
    assert second.store.count(TABLES["contacts"]) == counts["contacts"]
    systemusers = {
        r["systemuserid"] for r in second.store.query("SELECT systemuserid FROM systemusers")
    }
    assert systemusers == {u.systemuserid for u in tenant.dataverse_users}
    second.store.close()


def test_changed_schema_rebuilds_the_tables(tmp_path: Path) -> None:
    db = tmp_path / "dv.sqlite"
    store = Store(db, {"paged": PAGED})
    store.insert(PAGED, {"pagedid": "00000000-0000-0000-0000-000000000001", "name": "x"})
    store.close()
    changed = dataclasses.replace(PAGED, columns=(*PAGED.columns, Column("extra", "int")))
    reopened = Store(db, {"paged": changed})
    assert reopened.rebuilt
    assert reopened.count(changed) == 0
    reopened.close()


def test_demo_data_is_deterministic_and_plausible() -> None:
    tenant = load_tenant()
    first, second = seed.generate(tenant), seed.generate(tenant)
    assert first == second
    owners = set(seed.owner_ids(tenant))
    for name in seed.SEED_TABLES:
        rows = first[name]
        assert len(rows) == tenant.seed.counts[name]
        assert {r["_ownerid_value"].key for r in rows} == owners
    vins = [v["bos_vin"] for v in first["bos_vehicles"]]
    assert len(set(vins)) == len(vins)
    for vin in vins:
        assert re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", vin), vin
        assert vin[8] == seed._check_digit(vin), vin
    for vehicle in first["bos_vehicles"]:
        assert re.fullmatch(r"[A-Z]{2}\d{5}", vehicle["bos_registrationnumber"])
        assert 2012 <= vehicle["bos_modelyear"] <= 2026
    tickets = [c["ticketnumber"] for c in first["incidents"]]
    assert len(set(tickets)) == len(tickets)
    assert all(re.fullmatch(r"CAS-\d{5}-[A-Z]\d[A-Z]\d[A-Z]\d", t) for t in tickets)
    states = {(c["statecode"], c["statuscode"]) for c in first["incidents"]}
    assert {s for s, _ in states} == {0, 1, 2}
    for case in first["incidents"]:
        assert case["_customerid_value"] is not None
        assert TABLES["incidents"].state.state_of(case["statuscode"]) == case["statecode"]  # type: ignore[union-attr]
    emails = [c["emailaddress1"] for c in first["contacts"] if c["emailaddress1"]]
    assert all(e.endswith(".example") and e.isascii() for e in emails)


def test_vin_check_digit_known_value() -> None:
    assert seed._check_digit("1M8GDM9AXKP042788") == "X"  # the classic ISO 3779 example


# --- error mapping -------------------------------------------------------------------------------


def _all_subclasses(cls: type) -> list[type]:
    return list(
        itertools.chain.from_iterable([c, *_all_subclasses(c)] for c in cls.__subclasses__())
    )


def _instance(cls: type[errors.DataverseError]) -> errors.DataverseError:
    samples: dict[type, errors.DataverseError] = {
        errors.PayloadError: errors.PayloadError("contacts", "inner"),
        errors.NotMember: errors.NotMember(),
        errors.SegmentNotFound: errors.SegmentNotFound("x"),
        errors.MethodNotAllowed: errors.MethodNotAllowed("PUT"),
        errors.PreconditionFailed: errors.PreconditionFailed(),
        errors.DuplicateRecord: errors.DuplicateRecord(),
        errors.Throttled: errors.Throttled("0x80072322", "slow down", 7),
        errors.NotImplementedByEmulator: errors.NotImplementedByEmulator("x"),
        errors.QueryTooComplex: errors.QueryTooComplex(),
    }
    return samples.get(cls) or cls("message")


@pytest.mark.parametrize("cls", [errors.DataverseError, *_all_subclasses(errors.DataverseError)])
def test_every_error_class_renders_as_dataverse_does(cls: type[errors.DataverseError]) -> None:
    class Handle:
        tenant = load_tenant()
        entra_url = "https://login.example"
        base_url = "https://org.example"

    exc = _instance(cls)
    response = http.error_response(exc, Handle())  # type: ignore[arg-type]
    assert response.status_code == cls.status
    assert response.headers["OData-Version"] == "4.0"
    if cls is errors.Unauthorized:
        assert response.headers["WWW-Authenticate"].startswith(
            "Bearer authorization_uri=https://login.example/"
        )
        assert response.body == b""
        return
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert response.body.startswith(b'{"error":{"code":"' + exc.code.encode())
    if cls is errors.Throttled:
        assert response.headers["Retry-After"] == "7"
