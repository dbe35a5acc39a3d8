"""What a browser app needs from the dev stack, over real HTTP: CORS on the API host for the
sample SPA's origin (and for nobody else), the headers a page may read, and the SPA server
itself (devstack/spa.py). The SPA in a real browser: tests/browser/."""

from __future__ import annotations

import pytest

from devstack.spa import MSAL_BUNDLE
from tests.api.conftest import Api

SPA_HEADERS = "authorization,content-type,if-match,ocp-apim-subscription-key"


@pytest.fixture(scope="module")
def origin(api: Api) -> str:
    return api.stack.spa_url


def first_customer(api: Api) -> dict[str, str]:
    response = api.call("GET", "/api/customers?pageSize=1", user="alice")
    assert response.status_code == 200
    return dict(response.json()["items"][0])


def test_the_spa_origin_is_allowed_by_default(api: Api, origin: str) -> None:
    assert api.stack.settings["DEVSTACK_CORS"] == origin
    customer = first_customer(api)
    response = api.http.options(
        f"{api.url}/api/customers/{customer['id']}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": SPA_HEADERS,
        },
        timeout=30,
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-methods"] == "PATCH"
    assert response.headers["access-control-allow-headers"] == SPA_HEADERS
    # answered by the host: the API would have answered 401 subscription_key_missing
    assert "x-correlation-id" not in response.headers


def test_a_page_may_read_what_a_client_reads(api: Api, origin: str) -> None:
    """ETag, Location, Retry-After, WWW-Authenticate and the correlation id are not CORS-
    safelisted: host.json's customHeaders expose them, on answers and errors alike."""
    customer = first_customer(api)
    read = api.call(
        "GET", f"/api/customers/{customer['id']}", user="alice", headers={"Origin": origin}
    )
    assert read.headers["access-control-allow-origin"] == origin
    exposed = {h.strip().lower() for h in read.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"etag", "location", "retry-after", "www-authenticate", "x-correlation-id"}
    assert {"etag", "x-correlation-id"} <= {h.lower() for h in read.headers}
    stale = api.call(
        "PATCH",
        f"/api/customers/{customer['id']}",
        user="alice",
        headers={"Origin": origin, "If-Match": 'W/"1"'},
        json_body={"city": "Oslo"},
    )
    assert stale.status_code == 412
    assert stale.headers["access-control-allow-origin"] == origin
    challenged = api.call("GET", "/api/customers", user="dave", headers={"Origin": origin})
    assert challenged.status_code == 401
    assert 'error="insufficient_claims"' in challenged.headers["www-authenticate"]
    assert "www-authenticate" in challenged.headers["access-control-expose-headers"].lower()


def test_other_origins_get_no_cors_headers(api: Api, origin: str) -> None:
    for other in ("https://evil.example", origin.replace("localhost", "127.0.0.1")):
        preflight = api.http.options(
            f"{api.url}/api/customers",
            headers={"Origin": other, "Access-Control-Request-Method": "GET"},
            timeout=30,
        )
        assert preflight.status_code == 204
        assert "access-control-allow-origin" not in preflight.headers
        answer = api.call(
            "GET", "/api/customers?pageSize=1", user="alice", headers={"Origin": other}
        )
        assert answer.status_code == 200  # the API answers; the browser keeps it from the page
        assert "access-control-allow-origin" not in answer.headers


def test_the_spa_server(api: Api, origin: str) -> None:
    page = api.http.get(origin + "/", timeout=30)
    assert page.status_code == 200
    assert 'src="vendor/msal-browser.min.js"' in page.text
    policy = page.headers["content-security-policy"]
    assert f"connect-src 'self' {api.url} {api.stack.entra_url}" in policy
    assert "default-src 'self'" in policy  # scripts from the app's own files only, none inline
    assert "script-src" not in policy
    config = api.http.get(origin + "/config.js", timeout=30)
    assert config.headers["cache-control"] == "no-store"
    text = config.text
    tenant = api.stack.tenant
    for value in (
        tenant.app("portal-spa").client_id,
        f"{api.stack.entra_url}/{tenant.id}",
        f"{api.url}/api",
        f"{origin}/",
        api.subscription_key,
        tenant.app("central-api").identifier_uris[0] + "/customer.readwrite",
    ):
        assert f'"{value}' in text, value
    assert api.http.get(origin + "/package.json", timeout=30).status_code == 404
    assert api.http.get(origin + "/node_modules/", timeout=30).status_code == 404
    bundle = api.http.get(origin + "/vendor/msal-browser.min.js", timeout=30)
    if MSAL_BUNDLE.is_file():
        assert bundle.status_code == 200
        assert bundle.text.startswith("/*! @azure/msal-browser v")
    else:
        assert bundle.status_code == 404
        assert "npm ci" in bundle.text
