"""The parts of interactive sign-in where time must pass (code, device-code and spa refresh-token
lifetimes) and the redirect-URI matching rules, in process with a clock moved by hand."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.entra import redirects
from devstack.entra.claims import ClaimsRequest, parse_claims
from devstack.entra.codes import AuthorizationCodes, IssuedCode, check_challenge
from devstack.entra.devicecodes import EXPIRES_IN, DeviceCodes
from devstack.entra.emulator import Entra
from devstack.entra.errors import (
    AuthorizationPending,
    ExpiredToken,
    InvalidGrant,
    InvalidRequest,
    ProtocolError,
    SlowDown,
)
from devstack.entra.grants import Audit, TokenRequest
from devstack.entra.signin import SignIn
from devstack.pki import Material
from devstack.tenant import App, RedirectUri, Tenant
from tests.clock import ManualClock
from tests.devstack.entra_helpers import api_scope


def _issued(**overrides: Any) -> IssuedCode:
    fields: dict[str, Any] = {
        "client_id": "c",
        "redirect_uri": "http://localhost",
        "platform": "public_client",
        "scope": "openid",
        "sign_in": SignIn("alice"),
        "nonce": None,
        "code_challenge": None,
        "code_challenge_method": "plain",
    }
    fields.update(overrides)
    return IssuedCode(**fields)


def test_codes_expire_after_ten_minutes() -> None:
    clock = ManualClock()
    codes = AuthorizationCodes(clock)
    fresh, late = codes.issue(_issued()), codes.issue(_issued())
    clock.advance(9 * 60)
    assert codes.redeem(fresh).sign_in.user == "alice"
    clock.advance(61)
    with pytest.raises(InvalidGrant) as caught:
        codes.redeem(late)
    assert caught.value.code == 70008
    with pytest.raises(InvalidGrant) as again:
        codes.redeem(fresh)
    assert again.value.code == 54005  # a replay is still recognised as one


def test_device_code_polls_pending_slow_down_then_expired() -> None:
    clock = ManualClock()
    flows = DeviceCodes(clock)
    flow = flows.start("c", "openid", None)
    with pytest.raises(AuthorizationPending):
        flows.poll(flow.device_code, "c")
    clock.advance(flows.interval - 1)
    with pytest.raises(SlowDown):
        flows.poll(flow.device_code, "c")
    clock.advance(flows.interval)
    with pytest.raises(AuthorizationPending):
        flows.poll(flow.device_code, "c")
    clock.advance(EXPIRES_IN)
    with pytest.raises(ExpiredToken) as caught:
        flows.poll(flow.device_code, "c")
    assert caught.value.error == "expired_token"
    assert flows.by_user_code(flow.user_code) is None  # the page refuses it too


def test_approved_device_code_is_redeemed_once() -> None:
    clock = ManualClock()
    flows = DeviceCodes(clock)
    flow = flows.start("c", "openid", None)
    flows.decide(flow.device_code, SignIn("bob"))
    redeemed = flows.poll(flow.device_code, "c")
    assert redeemed.sign_in == SignIn("bob")
    clock.advance(flows.interval)
    with pytest.raises(InvalidGrant):
        flows.poll(flow.device_code, "c")


def test_spa_refresh_token_lives_24_hours_whatever_its_use(
    tenant: Tenant, material: Material
) -> None:
    clock = ManualClock(1_800_000_000)
    entra = Entra(tenant, material, base_url="https://localhost:1", clock=clock)
    spa = tenant.app("portal-spa").client_id
    token, _ = entra.refresh_tokens.issue(SignIn("alice"), spa, spa=True)

    def refresh(refresh_token: str) -> dict[str, Any]:
        form = {
            "grant_type": "refresh_token",
            "client_id": spa,
            "refresh_token": refresh_token,
            "scope": f"offline_access {api_scope(tenant, 'customer.read')}",
        }
        request = TokenRequest(form, None, False, 2, origin="http://localhost:7070")
        return entra.token_service.exchange(request, Audit())

    clock.advance(23 * 3600)
    renewed = refresh(token)
    assert renewed["refresh_token_expires_in"] == 3600  # the first token's expiry, carried over
    clock.advance(3600)
    with pytest.raises(InvalidGrant) as caught:
        refresh(renewed["refresh_token"])
    assert caught.value.code == 700084


@pytest.mark.parametrize(
    ("registered", "sent", "matches"),
    [
        ("http://localhost", "http://localhost:51234", True),  # any loopback port
        ("http://localhost", "http://localhost:51234/", True),  # no path is "/"
        ("http://localhost:7070/", "http://localhost:9999/", True),
        ("http://localhost/app", "http://localhost:1/App", False),  # paths are case-sensitive
        ("https://app.example/cb", "https://app.example:8443/cb", False),  # only loopback
        ("https://app.example/cb", "https://APP.example/cb", True),  # hosts are not
        ("https://app.example/cb", "https://app.example/cb?x=1", False),
        ("http://localhost", "not a uri", False),
    ],
)
def test_redirect_uri_matching(registered: str, sent: str, matches: bool) -> None:
    app = App("x", "x", False, redirect_uris=(RedirectUri(registered, "spa"),))
    if matches:
        assert redirects.registered(app, sent).uri == registered
    else:
        with pytest.raises(ProtocolError) as caught:
            redirects.registered(app, sent)
        assert caught.value.code == 50011


@pytest.mark.parametrize(
    ("challenge", "method", "code"),
    [("a" * 43, "S512", 50149), ("short", "S256", 501491), (None, "S256", 900144)],
)
def test_bad_code_challenges(challenge: str | None, method: str, code: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_challenge(challenge, method)
    assert caught.value.code == code


def test_claims_parameter() -> None:
    asked = parse_claims(
        '{"access_token":{"xms_cc":{"values":["cp1"]},'
        '"capolids":{"essential":true,"values":["p1"]},"acrs":{"essential":true,"value":"c1"}}}'
    )
    assert asked == ClaimsRequest(policies=("p1",), contexts=("c1",), capabilities=("cp1",))
    assert asked.step_up
    assert not parse_claims('{"access_token":{"xms_cc":{"values":["cp1"]}}}').step_up
    for malformed in ("{", "[]", '{"access_token": 1}'):
        with pytest.raises(InvalidRequest) as caught:
            parse_claims(malformed)
        assert caught.value.code == 90100
