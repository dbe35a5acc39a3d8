"""Issue 10, item 3, end to end: signing keys have a maximum age (24 h) and a grace period (1 h).

Through the API host on a runtime of its own (`fresh`), with the signing-key cache on a clock the
test moves: a key Entra retires (through its control plane: `add`, `promote`, `retire`) stops
validating once the cached set is older than the maximum age; with the key endpoint failing
(fault injection) the old keys serve through the grace period, then every request is 503
`signing_keys_unavailable` and `/api/health` says the keys are not ready; however many requests
arrive when the set expires, Entra sees one fetch. In-process counterparts, with the rate limit
in detail: tests/security/test_review_key_age.py.
"""

from __future__ import annotations

import requests

from shared import health
from tests.api.conftest import Api
from tests.api.test_openapi import conforms
from tests.faults.conftest import (
    DISCOVERY_PATH,
    Clock,
    KeyRing,
    Restart,
    add_fault,
    all_at_once,
    assert_error,
    key_fetches,
    kid_of,
    mint_user,
    retry_after,
)

LIST = "/api/customers?pageSize=1"
MAX_AGE = 86_400  # the defaults of SIGNING_KEYS_MAX_AGE_SECONDS and SIGNING_KEYS_GRACE_SECONDS
GRACE = 3_600
THIRTY_DAYS = 30 * 86_400


def health_check(api: Api) -> requests.Response:
    """`GET /api/health` afresh, as the OpenAPI document describes it."""
    health.forget()  # each instance keeps the result for 30 s; this test moves faster
    answer = api.call("GET", "/api/health", key=None, token=None)
    document = api.call("GET", "/api/openapi.json", key=None, token=None).json()
    conforms(document, "GET", "/health", answer)
    return answer


def test_a_key_retired_at_entra_is_refused_thirty_days_later(
    fresh: Restart, faults: Api, key_ring: KeyRing
) -> None:
    clock = Clock()
    rt = fresh(key_clock=clock)
    extra = key_ring.rotate()  # a token signed with a newly published key...
    signed_by_retired = mint_user(faults, "alice")
    key_ring.sign_with_original()  # ...then the original key signs again
    assert kid_of(signed_by_retired) == extra
    assert faults.call("GET", LIST, token=signed_by_retired).status_code == 200  # keys cached
    key_ring.retire(extra)
    assert faults.call("GET", LIST, token=signed_by_retired).status_code == 200  # still trusted
    entra_mark, dv_mark = faults.marks()

    clock.advance(THIRTY_DAYS)  # the instance stayed warm
    refused = faults.call("GET", LIST, token=signed_by_retired)
    assert_error(refused, 401, "invalid_token")
    assert refused.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    # The set was fetched again (discovery twice, then the JWKS), and nothing went further. The
    # v1 document is fetched beside the v2 one and the JWKS, so it may answer after the JWKS.
    fetched = key_fetches(faults.entra_requests(entra_mark))
    assert sorted((f["path"].rsplit("/", 1)[-1], f["status"]) for f in fetched) == [
        ("keys", 200),
        ("openid-configuration", 200),
        ("openid-configuration", 200),
    ]
    assert faults.dataverse_requests(dv_mark) == []
    assert faults.call("GET", LIST, token=mint_user(faults, "bob")).status_code == 200
    assert rt.keys.fetches == 2


def test_key_endpoint_down_old_keys_serve_for_the_grace_period_then_503(
    fresh: Restart, faults: Api
) -> None:
    clock = Clock()
    rt = fresh(key_clock=clock)
    remembered = mint_user(faults, "alice")
    # Minted before the fault: getting the demo token goes through Entra's discovery too.
    new_tokens = iter([mint_user(faults, "bob") for _ in range(3)])
    assert faults.call("GET", LIST, token=remembered).status_code == 200
    assert health_check(faults).json()["checks"]["signingKeys"] == "ok"
    add_fault(faults, "entra", path=DISCOVERY_PATH, status=503)

    clock.advance(MAX_AGE)  # the refresh fails: the old keys keep serving, seen tokens or new
    assert faults.call("GET", LIST, token=remembered).status_code == 200
    assert faults.call("GET", LIST, token=next(new_tokens)).status_code == 200
    stale = health_check(faults)
    assert stale.status_code == 200  # still ready, but an operator can see it
    assert stale.json()["checks"]["signingKeys"] == "stale"
    clock.advance(GRACE - 1)
    assert faults.call("GET", LIST, token=next(new_tokens)).status_code == 200

    clock.advance(1)  # past the grace period: fail closed, the remembered token too
    entra_mark, dv_mark = faults.marks()
    for token in (remembered, next(new_tokens)):
        answer = faults.call("GET", LIST, token=token)
        body = assert_error(answer, 503, "signing_keys_unavailable")
        assert "WWW-Authenticate" not in answer.headers
        assert 1 <= retry_after(answer) <= 10
        assert "retry" in body["message"].lower()
    assert_error(faults.call("GET", LIST, token="not.a.jwt"), 401, "invalid_token")
    unready = health_check(faults)
    assert unready.status_code == 503
    assert unready.json()["checks"]["signingKeys"] == "unavailable"
    # Nothing reached Dataverse but health's probe; and no storm at Entra: the last attempt was
    # a second ago, and the next one is due one cold-retry interval (10 s) after it.
    assert {r["path"] for r in faults.dataverse_requests(dv_mark)} <= {"/api/data/v9.2/"}
    assert key_fetches(faults.entra_requests(entra_mark)) == []

    faults.entra_control("DELETE", "faults")  # Entra answers again
    clock.advance(10)
    assert faults.call("GET", LIST, token=remembered).status_code == 200
    assert health_check(faults).json()["checks"]["signingKeys"] == "ok"
    assert rt.keys.state == "fresh"


def test_a_hundred_requests_when_the_set_expires_fetch_keys_once(
    fresh: Restart, faults: Api
) -> None:
    clock = Clock()
    rt = fresh(key_clock=clock)
    assert faults.call("GET", LIST, user="bob").status_code == 200  # keys cached
    tokens = [mint_user(faults, "alice" if i % 2 else "bob") for i in range(100)]
    clock.advance(MAX_AGE)
    fetches_before = rt.keys.fetches
    entra_mark, dv_mark = faults.marks()

    # Validation passes, then the unknown parameter is refused: no downstream call.
    answers = all_at_once(faults, "/api/customers?notAParameter=1", tokens)

    for answer in answers:
        assert_error(answer, 400, "invalid_input")
    assert rt.keys.fetches == fetches_before + 1
    assert sorted(  # in order of answer: v1 (asked beside v2 and the JWKS) may come last
        r["path"].rsplit("/", 1)[-1] for r in key_fetches(faults.entra_requests(entra_mark))
    ) == ["keys", "openid-configuration", "openid-configuration"]
    assert faults.dataverse_requests(dv_mark) == []
