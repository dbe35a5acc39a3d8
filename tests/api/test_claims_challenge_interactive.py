"""The claims challenge end to end, as a client app lives it: dave signs in interactively, the
API answers 401 insufficient_claims, dave signs in again with those claims and completes the
second factor, and the same call then succeeds (the API's On-Behalf-Of exchange for the new
token is granted)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import msal
import pytest

from tests.api.conftest import Api
from tests.api.contract_helpers import assert_error
from tests.devstack.signin_helpers import Browser, answer

LIST = "/api/customers?pageSize=5"
REDIRECT = "http://localhost:8401"


@pytest.fixture
def browser(api: Api) -> Iterator[Browser]:
    b = Browser(api.stack.entra_url, api.stack.ca_bundle)
    yield b
    b.close()


@pytest.fixture
def portal(api: Api) -> Iterator[msal.PublicClientApplication]:
    app = msal.PublicClientApplication(
        api.stack.tenant.app("portal").client_id,
        authority=f"{api.stack.entra_url}/{api.stack.tenant.id}",
        instance_discovery=False,
        verify=str(api.stack.ca_bundle),
        token_cache=msal.TokenCache(),
    )
    yield app
    app.http_client.close()


def test_dave_satisfies_the_claims_challenge_with_a_second_factor(
    api: Api, browser: Browser, portal: msal.PublicClientApplication
) -> None:
    scopes = [f"{api.stack.tenant.app('central-api').identifier_uris[0]}/customer.read"]
    dave = api.stack.tenant.user("dave")
    flow = portal.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT, response_mode="form_post")
    page = browser.sign_in(
        browser.open(flow["auth_uri"]), dave.upn, api.stack.material.password("dave")
    )
    signed_in = portal.acquire_token_by_auth_code_flow(flow, answer(page))
    assert "access_token" in signed_in, signed_in

    challenged = api.call("GET", LIST, token=signed_in["access_token"])
    assert_error(challenged, 401, "claims_challenge")
    header = challenged.headers["WWW-Authenticate"]
    assert 'error="insufficient_claims"' in header
    encoded = re.search(r'claims="([^"]*)"', header)
    assert encoded
    claims = base64.b64decode(encoded.group(1)).decode("utf-8")

    flow = portal.initiate_auth_code_flow(
        scopes, redirect_uri=REDIRECT, response_mode="form_post", claims_challenge=claims
    )
    second_factor = browser.open(flow["auth_uri"])  # signed in already: only the second factor
    stepped_up = portal.acquire_token_by_auth_code_flow(
        flow, answer(browser.approve(second_factor))
    )
    assert "access_token" in stepped_up, stepped_up

    response = api.call("GET", LIST, token=stepped_up["access_token"])
    assert response.status_code == 200, response.text
    assert response.json()["items"]
