"""Interactive sign-in against the Entra emulator, driven the way client apps drive Entra: MSAL
Python's auth-code flow (PKCE) and device flow, raw requests where a browser's `Origin` matters
(single-page apps), and the sign-in pages filled in over plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import msal
import pytest
import requests

from devstack.pki import Material
from devstack.tenant import Tenant
from tests.devstack.entra_helpers import (
    MsalApps,
    UserTokens,
    Validator,
    api_scope,
    assert_entra_error,
    obo_form,
)
from tests.devstack.signin_helpers import Browser, answer, authorize_url, page_error, pkce

DESKTOP_REDIRECT = "http://localhost:8400"  # MSAL's acquire_token_interactive uses any port
SPA_ORIGIN = "http://localhost:7070"


@pytest.fixture
def browser(entra: Any, ca_bundle: Path) -> Iterator[Browser]:
    b = Browser(entra.url, ca_bundle)
    yield b
    b.close()


@pytest.fixture
def fast_device_polls(entra: Any) -> Iterator[None]:
    """Entra's 5 s polling interval, at 1 s for the test (MSAL sleeps `interval` between polls)."""
    codes = entra.app.state.entra.device_codes
    saved, codes.interval = codes.interval, 1
    yield
    codes.interval = saved


def _portal(msal_apps: MsalApps, tenant: Tenant) -> msal.PublicClientApplication:
    return msal_apps.public(tenant.app("portal").client_id)


def _sign_in_with_msal(
    app: msal.PublicClientApplication,
    browser: Browser,
    material: Material,
    tenant: Tenant,
    user: str,
    scopes: list[str],
    **extra: Any,
) -> dict[str, Any]:
    flow = app.initiate_auth_code_flow(
        scopes, redirect_uri=DESKTOP_REDIRECT, response_mode="form_post", **extra
    )
    page = browser.open(flow["auth_uri"])
    assert page.status_code == 200, page.text
    redirected = browser.sign_in(page, tenant.user(user).upn, material.password(user))
    result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, answer(redirected))
    return result


# --- authorization code with PKCE (MSAL Python) --------------------------------------------------


def test_msal_auth_code_flow_signs_alice_in_and_refreshes(
    msal_apps: MsalApps, browser: Browser, tenant: Tenant, material: Material, validator: Validator
) -> None:
    app = _portal(msal_apps, tenant)
    result = _sign_in_with_msal(
        app, browser, material, tenant, "alice", [api_scope(tenant, "customer.read")]
    )
    assert "access_token" in result, result
    claims = validator.api_claims(result["access_token"])
    assert claims["oid"] == tenant.user("alice").oid
    assert claims["azp"] == tenant.app("portal").client_id
    assert "customer.read" in claims["scp"].split()
    assert {"refresh_token", "id_token", "client_info"} <= set(result)
    account = app.get_accounts()[0]
    refreshed = app.acquire_token_silent(
        [api_scope(tenant, "customer.read")], account=account, force_refresh=True
    )
    assert refreshed is not None
    assert "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]


def test_redirect_answer_keeps_state_and_adds_slash_to_pathless_uri(
    browser: Browser, entra: Any, tenant: Tenant, material: Material
) -> None:
    _, challenge = pkce()
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri="http://localhost:51234",
        scope=api_scope(tenant, "customer.read"),
        state="s-1",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    done = browser.sign_in(browser.open(url), "bob@demo.example", material.password("bob"))
    assert done.headers["location"].startswith("http://localhost:51234/?code=")
    assert answer(done)["state"] == "s-1"


def _code(
    browser: Browser,
    entra: Any,
    tenant: Tenant,
    material: Material,
    *,
    client: str = "portal",
    redirect_uri: str = DESKTOP_REDIRECT,
    user: str = "alice",
    challenge: str | None = None,
    **params: str,
) -> str:
    extra = {"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app(client).client_id,
        redirect_uri=redirect_uri,
        scope=f"openid offline_access {api_scope(tenant, 'customer.read')}",
        **extra,
        **params,
    )
    page = browser.open(url)
    if page.status_code == 302:  # the browser session signed the user in silently
        return answer(page)["code"]
    done = browser.sign_in(page, tenant.user(user).upn, material.password(user))
    return answer(done)["code"]


def _redeem(
    http: requests.Session,
    token_url: str,
    tenant: Tenant,
    code: str,
    *,
    client: str = "portal",
    redirect_uri: str = DESKTOP_REDIRECT,
    verifier: str | None = None,
    origin: str | None = None,
) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": tenant.app(client).client_id,
        "code": code,
        "redirect_uri": redirect_uri,
        "scope": f"openid offline_access {api_scope(tenant, 'customer.read')}",
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    headers = {"Origin": origin} if origin else {}
    return http.post(token_url, data=form, headers=headers, timeout=30)


def test_code_is_single_use(
    browser: Browser, entra: Any, tenant: Tenant, material: Material, http: Any, token_url: str
) -> None:
    verifier, challenge = pkce()
    code = _code(browser, entra, tenant, material, challenge=challenge)
    first = _redeem(http, token_url, tenant, code, verifier=verifier)
    assert first.status_code == 200, first.text
    again = _redeem(http, token_url, tenant, code, verifier=verifier)
    assert again.status_code == 400
    assert_entra_error(again.json(), "invalid_grant", 54005)


@pytest.mark.parametrize(
    ("verifier", "code"),
    [("not-the-verifier-" + "x" * 40, 501481), (None, 50148)],
    ids=["wrong-verifier", "no-verifier"],
)
def test_pkce_verifier_must_match(
    browser: Browser,
    entra: Any,
    tenant: Tenant,
    material: Material,
    http: Any,
    token_url: str,
    verifier: str | None,
    code: int,
) -> None:
    _, challenge = pkce()
    issued = _code(browser, entra, tenant, material, challenge=challenge)
    response = _redeem(http, token_url, tenant, issued, verifier=verifier)
    assert response.status_code == 400
    assert_entra_error(response.json(), "invalid_grant", code)


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(
    browser: Browser, entra: Any, tenant: Tenant
) -> None:
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri="https://evil.example/callback",
        scope=api_scope(tenant, "customer.read"),
    )
    page = browser.open(url)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert page_error(page).startswith("AADSTS50011: The redirect URI 'https://evil.example/")


def test_token_endpoint_refuses_a_redirect_uri_not_registered(
    browser: Browser, entra: Any, tenant: Tenant, material: Material, http: Any, token_url: str
) -> None:
    code = _code(browser, entra, tenant, material)
    response = _redeem(http, token_url, tenant, code, redirect_uri="https://evil.example/")
    assert_entra_error(response.json(), "invalid_request", 50011)


def test_errors_after_the_redirect_uri_is_trusted_go_to_the_app(
    browser: Browser, entra: Any, tenant: Tenant
) -> None:
    common = {"client_id": tenant.app("portal").client_id, "redirect_uri": DESKTOP_REDIRECT}
    bad_scope = browser.open(
        authorize_url(entra.url, tenant.id, scope="api://nobody/x", state="z", **common)
    )
    assert answer(bad_scope)["error"] == "invalid_scope"
    assert answer(bad_scope)["state"] == "z"
    no_consent = browser.open(
        authorize_url(entra.url, tenant.id, scope=api_scope(tenant, "vehicle.read"), **common)
    )
    assert answer(no_consent)["error"] == "consent_required"
    assert answer(no_consent)["error_description"].startswith("AADSTS65001: ")
    silent = browser.open(
        authorize_url(
            entra.url, tenant.id, scope=api_scope(tenant, "customer.read"), prompt="none", **common
        )
    )
    assert answer(silent)["error"] == "login_required"


def test_cancel_on_the_sign_in_page_is_access_denied(
    browser: Browser, entra: Any, tenant: Tenant
) -> None:
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri=DESKTOP_REDIRECT,
        scope=api_scope(tenant, "customer.read"),
    )
    refused = browser.submit(browser.open(url), action="cancel")
    assert answer(refused)["error"] == "access_denied"


def test_wrong_password_stays_on_the_page(browser: Browser, entra: Any, tenant: Tenant) -> None:
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri=DESKTOP_REDIRECT,
        scope=api_scope(tenant, "customer.read"),
    )
    page = browser.sign_in(browser.open(url), "alice@demo.example", "not-her-password")
    assert page.status_code == 400
    assert page_error(page).startswith("AADSTS50126: ")


def test_browser_session_signs_in_silently_the_second_time(
    browser: Browser, entra: Any, tenant: Tenant, material: Material
) -> None:
    _code(browser, entra, tenant, material)
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri=DESKTOP_REDIRECT,
        scope=api_scope(tenant, "customer.read"),
        prompt="none",
    )
    assert "code" in answer(browser.open(url))
    browser.open(f"{entra.url}/{tenant.id}/oauth2/v2.0/logout")
    assert answer(browser.open(url))["error"] == "login_required"


# --- single-page apps: PKCE, cross-origin redemption, CORS, 24-hour refresh tokens ---------------


def test_spa_redeems_cross_origin_with_cors_and_a_24_hour_refresh_token(
    browser: Browser, entra: Any, tenant: Tenant, material: Material, http: Any, token_url: str
) -> None:
    verifier, challenge = pkce()
    redirect = f"{SPA_ORIGIN}/"
    code = _code(
        browser,
        entra,
        tenant,
        material,
        client="portal-spa",
        redirect_uri=redirect,
        challenge=challenge,
    )
    preflight = http.options(
        token_url,
        headers={
            "Origin": SPA_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] in ("*", SPA_ORIGIN)
    assert "POST" in preflight.headers["access-control-allow-methods"]
    redeemed = _redeem(
        http,
        token_url,
        tenant,
        code,
        client="portal-spa",
        redirect_uri=redirect,
        verifier=verifier,
        origin=SPA_ORIGIN,
    )
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.headers["access-control-allow-origin"] in ("*", SPA_ORIGIN)
    body = redeemed.json()
    assert 0 < body["refresh_token_expires_in"] <= 24 * 3600
    refresh = {
        "grant_type": "refresh_token",
        "client_id": tenant.app("portal-spa").client_id,
        "refresh_token": body["refresh_token"],
        "scope": f"offline_access {api_scope(tenant, 'customer.read')}",
    }
    same_origin = http.post(token_url, data=refresh, timeout=30)
    assert_entra_error(same_origin.json(), "invalid_request", 9002327)
    wrong = _redeem(
        http,
        token_url,
        tenant,
        "no-such-code",
        client="portal-spa",
        redirect_uri=redirect,
        origin=SPA_ORIGIN,
    )
    assert wrong.headers["access-control-allow-origin"] == "*"  # a spa page reads its errors
    again = http.post(token_url, data=refresh, headers={"Origin": SPA_ORIGIN}, timeout=30)
    assert again.status_code == 200, again.text
    # Refresh tokens redeemed from a spa one keep its first expiry.
    assert again.json()["refresh_token_expires_in"] <= body["refresh_token_expires_in"]


def test_spa_code_without_origin_or_without_pkce_is_refused(
    browser: Browser, entra: Any, tenant: Tenant, material: Material, http: Any, token_url: str
) -> None:
    redirect = f"{SPA_ORIGIN}/"
    verifier, challenge = pkce()
    code = _code(
        browser,
        entra,
        tenant,
        material,
        client="portal-spa",
        redirect_uri=redirect,
        challenge=challenge,
    )
    same_origin = _redeem(
        http,
        token_url,
        tenant,
        code,
        client="portal-spa",
        redirect_uri=redirect,
        verifier=verifier,
    )
    assert_entra_error(same_origin.json(), "invalid_request", 9002327)
    no_pkce = _code(browser, entra, tenant, material, client="portal-spa", redirect_uri=redirect)
    refused = _redeem(
        http,
        token_url,
        tenant,
        no_pkce,
        client="portal-spa",
        redirect_uri=redirect,
        origin=SPA_ORIGIN,
    )
    assert_entra_error(refused.json(), "invalid_request", 9002325)


def test_cross_origin_redemption_of_a_desktop_code_is_refused(
    browser: Browser, entra: Any, tenant: Tenant, material: Material, http: Any, token_url: str
) -> None:
    code = _code(browser, entra, tenant, material)
    response = _redeem(http, token_url, tenant, code, origin=SPA_ORIGIN)
    assert response.status_code == 400
    # No CORS header: a page cannot even read why (its console shows a CORS error, as Entra's
    # documentation describes for a redirect URI that is not of type spa).
    assert "access-control-allow-origin" not in response.headers
    assert_entra_error(response.json(), "invalid_request", 9002326)


def test_spa_redirect_uri_matches_on_any_localhost_port(
    browser: Browser, entra: Any, tenant: Tenant, material: Material
) -> None:
    code = _code(
        browser,
        entra,
        tenant,
        material,
        client="portal-spa",
        redirect_uri="http://localhost:43210/",
    )
    assert code


# --- device code ---------------------------------------------------------------------------------


def _approve_device_code(
    browser: Browser, entra: Any, user_code: str, upn: str, password: str
) -> requests.Response:
    page = browser.open(f"{entra.url}/devicelogin")
    assert page.status_code == 200
    sign_in_page = browser.submit(page, otc=user_code)
    assert sign_in_page.status_code == 200, sign_in_page.text
    return browser.sign_in(sign_in_page, upn, password)


def test_msal_device_flow_approved_on_the_devicelogin_page(
    msal_apps: MsalApps,
    browser: Browser,
    entra: Any,
    tenant: Tenant,
    material: Material,
    validator: Validator,
    fast_device_polls: None,
) -> None:
    app = _portal(msal_apps, tenant)
    flow = app.initiate_device_flow([api_scope(tenant, "customer.read")])
    assert {
        "user_code",
        "device_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    } <= set(flow)
    assert flow["verification_uri"] == f"{entra.url}/devicelogin"
    assert flow["expires_in"] == 900
    assert flow["user_code"] in flow["message"]
    pending = app.client._obtain_token_by_device_flow(dict(flow))  # one poll, not the loop
    assert pending["error"] == "authorization_pending"
    too_soon = app.client._obtain_token_by_device_flow(dict(flow))
    assert too_soon["error"] == "slow_down"
    done = _approve_device_code(
        browser, entra, flow["user_code"], "bob@demo.example", material.password("bob")
    )
    assert "signed in to portal" in done.text
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert validator.api_claims(result["access_token"])["oid"] == tenant.user("bob").oid


def test_device_flow_declined_and_unknown_codes(
    msal_apps: MsalApps, browser: Browser, entra: Any, tenant: Tenant, fast_device_polls: None
) -> None:
    app = _portal(msal_apps, tenant)
    flow = app.initiate_device_flow([api_scope(tenant, "customer.read")])
    wrong = browser.submit(browser.open(f"{entra.url}/devicelogin"), otc="NOTACODE1")
    assert page_error(wrong).startswith("AADSTS70018: ")
    page = browser.submit(browser.open(f"{entra.url}/devicelogin"), otc=flow["user_code"].lower())
    browser.submit(page, action="cancel")
    result = app.acquire_token_by_device_flow(flow)
    assert result["error"] == "authorization_declined", result
    bogus = app.client._obtain_token_by_device_flow({"device_code": "nope", "interval": 1})
    assert bogus["error"] == "bad_verification_code"


# --- the claims challenge: dave's second factor --------------------------------------------------


def test_dave_completes_mfa_for_the_claims_challenge_then_obo_succeeds(
    msal_apps: MsalApps,
    browser: Browser,
    entra: Any,
    tenant: Tenant,
    material: Material,
    http: Any,
    token_url: str,
) -> None:
    app = _portal(msal_apps, tenant)
    scopes = [api_scope(tenant, "customer.read")]
    first = _sign_in_with_msal(app, browser, material, tenant, "dave", scopes)
    refused = http.post(token_url, data=obo_form(tenant, material, first["access_token"]))
    assert_entra_error(refused.json(), "interaction_required", 50079)
    challenge = refused.json()["claims"]

    flow = app.initiate_auth_code_flow(
        scopes, redirect_uri=DESKTOP_REDIRECT, response_mode="form_post", claims_challenge=challenge
    )
    # The browser session knows dave already: no password, straight to the second factor.
    second_factor = browser.open(flow["auth_uri"])
    assert "multi-factor" in second_factor.text
    result = app.acquire_token_by_auth_code_flow(flow, answer(browser.approve(second_factor)))
    assert "access_token" in result, result
    exchanged = http.post(token_url, data=obo_form(tenant, material, result["access_token"]))
    assert exchanged.status_code == 200, exchanged.text
    dataverse = exchanged.json()["access_token"]
    assert jwt.decode(dataverse, options={"verify_signature": False})["amr"] == ["pwd", "mfa"]


def test_mfa_denied_is_access_denied(
    browser: Browser, entra: Any, tenant: Tenant, material: Material, user_tokens: UserTokens
) -> None:
    claims = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri=DESKTOP_REDIRECT,
        scope=api_scope(tenant, "customer.read"),
        claims=claims,
    )
    second = browser.sign_in(browser.open(url), "alice@demo.example", material.password("alice"))
    refused = browser.submit(second, action="deny")
    assert answer(refused)["error"] == "access_denied"
    assert answer(refused)["error_description"].startswith("AADSTS500121: ")


def test_auth_context_claims_put_acrs_in_the_token(
    msal_apps: MsalApps, browser: Browser, tenant: Tenant, material: Material, validator: Validator
) -> None:
    app = msal_apps.public(tenant.app("portal").client_id)
    claims = json.dumps({"access_token": {"acrs": {"essential": True, "value": "c1"}}})
    flow = app.initiate_auth_code_flow(
        [api_scope(tenant, "customer.read")],
        redirect_uri=DESKTOP_REDIRECT,
        response_mode="form_post",
        claims_challenge=claims,
    )
    page = browser.sign_in(
        browser.open(flow["auth_uri"]), "alice@demo.example", material.password("alice")
    )
    result = app.acquire_token_by_auth_code_flow(flow, answer(browser.approve(page)))
    assert validator.api_claims(result["access_token"])["acrs"] == ["c1"]


# --- web apps, prompt and login_hint -------------------------------------------------------------


@pytest.fixture
def partner_web_consent(entra: Any) -> Iterator[None]:
    """partner-api, signing users in as a web app, with consent for the central API."""
    grant = {"client": "partner-api", "resource": "central-api", "scopes": ["customer.read"]}
    requests.post(f"{entra.url}/_emulator/consents", json=grant, timeout=30).raise_for_status()
    yield
    requests.delete(f"{entra.url}/_emulator/consents", json=grant, timeout=30).raise_for_status()


def test_web_app_redeems_its_code_with_its_secret_never_cross_origin(
    browser: Browser,
    entra: Any,
    tenant: Tenant,
    material: Material,
    http: Any,
    token_url: str,
    partner_web_consent: None,
) -> None:
    web = "https://localhost/signin-oidc"
    code = _code(browser, entra, tenant, material, client="partner-api", redirect_uri=web)
    form = {
        "grant_type": "authorization_code",
        "client_id": tenant.app("partner-api").client_id,
        "code": code,
        "redirect_uri": web,
        "scope": api_scope(tenant, "customer.read"),
    }
    no_secret = http.post(token_url, data=form, timeout=30)
    assert_entra_error(no_secret.json(), "invalid_client", 7000218)
    with_secret = {**form, "client_secret": material.client_secret("partner-api")}
    from_browser = http.post(
        token_url, data=with_secret, headers={"Origin": "https://localhost"}, timeout=30
    )
    assert_entra_error(from_browser.json(), "invalid_request", 9002326)
    redeemed = http.post(token_url, data=with_secret, timeout=30)
    assert redeemed.status_code == 200, redeemed.text


def test_prompt_login_asks_again_and_login_hint_fills_the_name(
    browser: Browser, entra: Any, tenant: Tenant, material: Material
) -> None:
    _code(browser, entra, tenant, material)  # a browser session for alice
    url = authorize_url(
        entra.url,
        tenant.id,
        client_id=tenant.app("portal").client_id,
        redirect_uri=DESKTOP_REDIRECT,
        scope=api_scope(tenant, "customer.read"),
        prompt="login",
        login_hint="bob@demo.example",
    )
    page = browser.open(url)
    assert page.status_code == 200
    assert 'value="bob@demo.example"' in page.text


def test_sign_in_for_openid_scopes_only_gets_id_and_refresh_tokens(
    msal_apps: MsalApps, browser: Browser, tenant: Tenant, material: Material
) -> None:
    """What MSAL.js's loginRedirect asks by default (openid profile offline_access)."""
    app = _portal(msal_apps, tenant)
    result = _sign_in_with_msal(app, browser, material, tenant, "carol", [])
    assert "error" not in result, result
    assert result["id_token_claims"]["preferred_username"] == tenant.user("carol").upn
    assert "refresh_token" in result
    assert "access_token" not in result  # Entra's would be for Microsoft Graph
    later = app.acquire_token_silent([api_scope(tenant, "customer.read")], app.get_accounts()[0])
    assert later is not None
    assert "access_token" in later, later  # the refresh token then serves the API's scopes
