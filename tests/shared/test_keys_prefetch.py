"""`SigningKeys.prefetch` (the start-up warm-up's key load) against the Entra emulator over HTTPS:
it loads the keys ahead of the first request, keeps the key-validation rules as they are, and
a prefetch that fails leaves the first request to fetch on demand. Also: a load asks for the v1
discovery document beside the v2 one, not after it."""

from __future__ import annotations

import pytest
import requests

from shared.auth import InvalidToken, SigningKeys, TokenValidator
from tests.clock import ManualClock as Clock
from tests.conftest import Emulator
from tests.shared import test_auth as auth
from tests.shared.test_auth import TID, claims, sign

# test_auth's fixtures: a clean Entra emulator, a session trusting the dev CA, a clock the test
# moves, keys and a validator on them.
clock, entra_clean, keys, session, validator = (
    auth.clock,
    auth.entra_clean,
    auth.keys,
    auth.session,
    auth.validator,
)


def fault(session: requests.Session, entra: Emulator, **rule: object) -> None:
    session.post(f"{entra.url}/_emulator/faults", json=rule, timeout=5).raise_for_status()


def entra_log(session: requests.Session, entra: Emulator) -> list[dict[str, object]]:
    answer = session.get(f"{entra.url}/_emulator/requests", timeout=5)
    return list(answer.json()["requests"])


def test_a_prefetch_loads_the_keys_and_the_first_validation_fetches_nothing(
    entra_clean: Emulator, keys: SigningKeys, validator: TokenValidator
) -> None:
    assert keys.prefetch()
    assert keys.fetches == 1
    assert keys.loaded() is not None
    validator.validate(sign(entra_clean, claims(entra_clean)))
    assert keys.prefetch()  # loaded already: nothing fetched again
    assert keys.fetches == 1


def test_a_failed_prefetch_leaves_the_first_request_to_fetch_at_once(
    entra_clean: Emulator,
    keys: SigningKeys,
    validator: TokenValidator,
    session: requests.Session,
) -> None:
    fault(session, entra_clean, path="*/discovery/v2.0/keys", status=503, count=1)
    assert not keys.prefetch()
    assert keys.loaded() is None
    # No cold-retry interval was started (the clock has not moved): the request fetches itself.
    assert validator.validate(sign(entra_clean, claims(entra_clean))).oid
    assert keys.fetches == 2


def test_unknown_kids_refresh_as_before_after_a_prefetch(
    entra_clean: Emulator, keys: SigningKeys, validator: TokenValidator, clock: Clock
) -> None:
    assert keys.prefetch()
    for kid in ("a", "b"):
        with pytest.raises(InvalidToken):
            validator.validate(sign(entra_clean, claims(entra_clean), {"kid": kid}))
    assert keys.fetches == 1  # fetched just now, at start-up: no refresh for an unknown kid
    clock.now += 301
    for kid in ("c", "d"):
        with pytest.raises(InvalidToken):
            validator.validate(sign(entra_clean, claims(entra_clean), {"kid": kid}))
    assert keys.fetches == 2  # one refresh for the first unknown kid, none after


def test_the_v1_discovery_document_is_fetched_beside_the_v2_one(
    entra_clean: Emulator, keys: SigningKeys, session: requests.Session
) -> None:
    # The v2 document answers a second late: fetched one after the other, v1 would be asked
    # only once v2 had answered; side by side, v1 has long answered when v2 does.
    v2 = f"/{TID}/v2.0/.well-known/openid-configuration"
    fault(session, entra_clean, path=v2, delay_ms=1000, count=1)
    assert keys.prefetch()
    log = entra_log(session, entra_clean)
    (v2_entry,) = [e for e in log if e["path"] == v2]
    (v1_entry,) = [e for e in log if e["path"] == f"/{TID}/.well-known/openid-configuration"]
    (jwks,) = [e for e in log if str(e["path"]).endswith("/keys")]
    assert int(v1_entry["seq"]) < int(v2_entry["seq"])  # v1 answered first
    assert int(v2_entry["seq"]) < int(jwks["seq"])  # the JWKS waits for v2, which names it
