"""R10 (and issue 4, deliverable 3): many identities with different permissions calling at once.

56 callers start together on a cold runtime: 24 tokens of Alice's (salesperson: sees and
creates only contacts she owns), 4 of Alice's through the read-only `reporting` app, 16 of
Bob's (service agent: reads every contact, may not create one, opens cases) and 12 of the
`dealer-sync` application (vehicles, and customers read-only). Each token is distinct, so each
user token is its own OBO exchange and cache entry. Every answer must be the one its caller
should get, every Dataverse request must have been made as that caller, and every record
written under load must be there afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.api.conftest import Api
from tests.faults.conftest import Restart, mint_app, mint_user, token_posts

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class Caller:
    kind: str  # "alice", "alice-reporting", "bob" or "app"
    token: str
    answers: list[tuple[str, requests.Response]] = field(default_factory=list)
    created: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # route, id, sent


class Client:
    """One HTTP session per thread; every request has a correlation id of its own."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._local = threading.local()
        self.sessions: list[requests.Session] = []
        self.sent: dict[str, str] = {}  # correlation id -> caller kind
        self._lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self.sessions.append(session)
        return session

    def __call__(
        self, caller: Caller, method: str, path: str, body: Any = None
    ) -> requests.Response:
        cid = f"r10-{uuid.uuid4()}"
        with self._lock:
            self.sent[cid] = caller.kind
        response = self._session().request(
            method,
            self.api.url + path,
            headers={
                "Ocp-Apim-Subscription-Key": self.api.subscription_key,
                "Authorization": f"Bearer {caller.token}",
                "x-correlation-id": cid,
            },
            json=body,
            timeout=60,
        )
        assert response.headers["x-correlation-id"] == cid
        caller.answers.append((f"{method} {path.split('?')[0]}", response))
        return response

    def close(self) -> None:
        for session in self.sessions:
            session.close()


def _alice(call: Client, me: Caller, run: str, n: int) -> None:
    assert call(me, "GET", "/api/customers?pageSize=20").status_code == 200
    sent = {"lastName": f"R10 {run} {n}", "firstName": "Load", "city": f"City {n}"}
    created = call(me, "POST", "/api/customers", sent)
    assert created.status_code == 201, created.text
    me.created.append(("customers", created.json()["id"], sent))
    denied = call(me, "GET", "/api/vehicles?pageSize=1")
    assert denied.status_code == 403
    assert denied.json()["code"] == "application_only"


def _alice_reporting(call: Client, me: Caller, run: str, n: int) -> None:
    assert call(me, "GET", "/api/customers?pageSize=20").status_code == 200
    denied = call(me, "POST", "/api/customers", {"lastName": f"R10 {run} {n}"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "insufficient_scope"


def _bob(call: Client, me: Caller, run: str, n: int) -> None:
    listed = call(me, "GET", "/api/customers?pageSize=20")
    assert listed.status_code == 200
    denied = call(me, "POST", "/api/customers", {"lastName": f"R10 {run} {n}"})
    assert denied.status_code == 403, denied.text
    assert denied.json()["code"] == "backend_forbidden"  # his Dataverse role, not his scopes
    sent = {"title": f"R10 {run} {n}", "customerId": listed.json()["items"][n % 20]["id"]}
    created = call(me, "POST", "/api/cases", sent)
    assert created.status_code == 201, created.text
    me.created.append(("cases", created.json()["id"], sent))


def _app(call: Client, me: Caller, run: str, n: int) -> None:
    assert call(me, "GET", "/api/vehicles?pageSize=20").status_code == 200
    sent = {"name": f"R10 {run} {n}", "make": "Load"}
    created = call(me, "POST", "/api/vehicles", sent)
    assert created.status_code == 201, created.text
    me.created.append(("vehicles", created.json()["id"], sent))
    assert call(me, "GET", "/api/customers?pageSize=20").status_code == 200


SCRIPTS: dict[str, Callable[[Client, Caller, str, int], None]] = {
    "alice": _alice,
    "alice-reporting": _alice_reporting,
    "bob": _bob,
    "app": _app,
}


def _read_back(call: Client, me: Caller) -> None:
    for route, record_id, sent in me.created:
        again = call(me, "GET", f"/api/{route}/{record_id}")
        assert again.status_code == 200, again.text
        record = again.json()
        assert record["id"] == record_id
        assert {k: record[k] for k in sent} == sent


def test_r10_many_users_at_once_each_get_their_own_answers(fresh: Restart, faults: Api) -> None:
    # 28 of Alice's requests at once test whose answer each caller gets, not a fair share: the
    # per-caller cap would refuse most of them (tests/faults/test_review_fairness.py covers it).
    fresh(MAX_CONCURRENT_REQUESTS_PER_CALLER="0")
    tenant = faults.stack.tenant
    callers = (
        [Caller("alice", mint_user(faults, "alice")) for _ in range(24)]
        + [Caller("alice-reporting", mint_user(faults, "alice", "reporting")) for _ in range(4)]
        + [Caller("bob", mint_user(faults, "bob")) for _ in range(16)]
        + [Caller("app", mint_app(faults)) for _ in range(12)]
    )
    assert len({c.token for c in callers}) == len(callers) == 56
    run = uuid.uuid4().hex[:8]
    entra_mark, dv_mark = faults.marks()
    call = Client(faults)
    gate = threading.Barrier(len(callers))

    def work(item: tuple[int, Caller]) -> None:
        n, me = item
        gate.wait(timeout=30)
        SCRIPTS[me.kind](call, me, run, n)

    try:
        with ThreadPoolExecutor(max_workers=len(callers)) as pool:
            list(pool.map(work, enumerate(callers)))
            list(pool.map(lambda me: _read_back(call, me), callers))
    finally:
        call.close()

    # Rows: Alice's lists hold only contacts she owns; Bob's and the app's reach further.
    dv = faults.stack.dataverse_app.state.dataverse
    owner = {
        row["contactid"]: row["_ownerid_value"]
        for row in dv.store.query('SELECT contactid, _ownerid_value FROM "contacts"')
    }
    systemuser = {u.user or u.app: u.systemuserid for u in tenant.dataverse_users}
    vehicles = {
        row["bos_vehicleid"] for row in dv.store.query('SELECT bos_vehicleid FROM "bos_vehicles"')
    }
    for me in callers:
        for what, response in me.answers:
            if what == "GET /api/vehicles" and me.kind == "app":
                ids = [item["id"] for item in response.json()["items"]]
                assert ids
                assert set(ids) <= vehicles
            if what != "GET /api/customers":
                continue
            ids = [item["id"] for item in response.json()["items"]]
            assert ids, what
            owners = {owner[i] for i in ids}
            if me.kind.startswith("alice"):
                assert owners == {systemuser["alice"]}
            else:
                assert len(owners) > 1  # organisation-wide
    created = [c for me in callers for c in me.created]
    assert len(created) == 24 + 16 + 12
    assert all(owner[i] == systemuser["alice"] for route, i, _ in created if route == "customers")

    # Dataverse saw each request as its own caller, nothing else, and never throttled.
    expected = {
        "alice": {"oid": tenant.user("alice").oid, "systemuserid": systemuser["alice"]},
        "alice-reporting": {"oid": tenant.user("alice").oid, "systemuserid": systemuser["alice"]},
        "bob": {"oid": tenant.user("bob").oid, "systemuserid": systemuser["bob"]},
        "app": {
            "appid": tenant.app("central-api").client_id,
            "systemuserid": systemuser["central-api"],
        },
    }
    seen = faults.dataverse_requests(dv_mark)
    assert seen
    for entry in seen:
        assert entry["correlation_id"] in call.sent, entry  # nothing but these requests
        kind = call.sent[entry["correlation_id"]]
        assert entry["caller"] == expected[kind], entry
        assert entry["status"] != 429
    kinds_downstream = {call.sent[e["correlation_id"]] for e in seen}
    assert kinds_downstream == {"alice", "alice-reporting", "bob", "app"}

    # One On-Behalf-Of exchange per user token (each token is its own cache entry), and one
    # client-credentials exchange for all twelve concurrent application callers.
    posts = token_posts(faults.entra_requests(entra_mark))
    grants = Counter((p["grant_type"], (p["caller"] or {}).get("oid")) for p in posts)
    assert grants == {
        (OBO_GRANT, tenant.user("alice").oid): 24 + 4,
        (OBO_GRANT, tenant.user("bob").oid): 16,
        ("client_credentials", None): 1,
    }
