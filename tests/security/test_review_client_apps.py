"""Which client apps may call (issue 10, item 9), end to end through the API host.

`ALLOWED_CLIENT_APP_IDS` limits the client apps whose tokens the API accepts (`azp` in v2 tokens,
`appid` in v1); `SUBSCRIPTION_CLIENT_APP_IDS` binds subscriptions to apps, so that a leaked key
is useless with another app's token. Either refusal is 403 `client_app_not_allowed`, names no
id, and costs nothing downstream. Each test restarts the API with its settings (`fresh`, as a new
Functions instance would start) and warms it with an allowed call first, so that "nothing
downstream" is about the refused call, not the cold start.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from shared.settings import Settings, SettingsError
from tests.api.conftest import Api
from tests.faults import conftest as fault_fixtures
from tests.security.downstream import assert_error, watch
from tests.security.tokens import TokenBuilder
from tests.shared.test_settings import GOOD

fresh = fault_fixtures.fresh
Restart = fault_fixtures.Restart

NOT_ALLOWED = "Forbidden. The calling application is not allowed to use this API."
NOT_WITH_THIS_KEY = (
    "Forbidden. The calling application is not allowed to use this API with this subscription key."
)
CUSTOMERS = "/api/customers?pageSize=1"
VEHICLES = "/api/vehicles?pageSize=1"


def client_id(api: Api, app: str) -> str:
    return api.stack.tenant.app(app).client_id


def dealer_key(api: Api) -> str:
    return api.stack.material.subscription_keys["demo-dealer"][0]


def assert_not_allowed(response: requests.Response, message: str, api: Api) -> None:
    body = assert_error(response, 403, message)
    assert body["code"] == "client_app_not_allowed"
    for app in ("portal", "reporting", "dealer-sync", "no-access"):
        assert client_id(api, app) not in response.text
    assert "WWW-Authenticate" not in response.headers


def refused(api: Api, path: str, message: str = NOT_ALLOWED, **caller: Any) -> None:
    """`caller`'s call is 403 client_app_not_allowed, and nothing went to Entra or Dataverse."""
    with watch(api) as seen:
        response = api.call("GET", path, **caller)
    assert_not_allowed(response, message, api)
    assert seen.nothing, seen.describe()


@pytest.fixture
def session_tokens(api: Api) -> Api:
    """Every token the tests use, acquired before any block that counts Entra's traffic."""
    api.user_token("alice", "portal")
    api.user_token("bob", "reporting")
    api.app_token("dealer-sync")
    return api


# --- the allowlist ---------------------------------------------------------------------------


def test_only_allowlisted_apps_may_call(session_tokens: Api, fresh: Restart) -> None:
    api = session_tokens
    fresh(ALLOWED_CLIENT_APP_IDS=json.dumps([client_id(api, "portal")]))
    assert api.call("GET", CUSTOMERS, user="alice").status_code == 200
    refused(api, VEHICLES, app="dealer-sync")
    refused(api, CUSTOMERS, user="bob", client="reporting")  # a user, through another app


def test_the_allowlist_takes_ids_in_any_case_and_v1_tokens_by_appid(
    session_tokens: Api, tokens: TokenBuilder, fresh: Restart
) -> None:
    api = session_tokens
    allowed = [client_id(api, "portal").upper(), client_id(api, "dealer-sync").upper()]
    fresh(ALLOWED_CLIENT_APP_IDS=json.dumps(allowed))
    assert api.call("GET", VEHICLES, app="dealer-sync").status_code == 200
    v1 = tokens.sign(tokens.claims(None, "dealer-sync", version=1))
    assert api.call("GET", VEHICLES, token=v1).status_code == 200
    refused(api, CUSTOMERS, user="bob", client="reporting")
    other_v1 = tokens.sign(tokens.claims(None, "no-access", version=1))
    refused(api, VEHICLES, token=other_v1)


def test_without_the_settings_every_app_of_the_tenant_may_call(
    session_tokens: Api, fresh: Restart
) -> None:
    api = session_tokens
    fresh(ALLOWED_CLIENT_APP_IDS="", SUBSCRIPTION_CLIENT_APP_IDS="")
    assert api.call("GET", CUSTOMERS, user="alice").status_code == 200
    assert api.call("GET", CUSTOMERS, user="bob", client="reporting").status_code == 200
    assert api.call("GET", VEHICLES, app="dealer-sync").status_code == 200
    fresh(ALLOWED_CLIENT_APP_IDS="[]")
    assert api.call("GET", VEHICLES, app="dealer-sync").status_code == 200


def test_the_client_app_is_checked_before_the_scopes(session_tokens: Api, fresh: Restart) -> None:
    """An app outside the allowlist learns nothing about the endpoint's scopes or roles: Bob
    through `reporting` has only customer.read, and still gets the client-app answer."""
    api = session_tokens
    fresh(ALLOWED_CLIENT_APP_IDS=json.dumps([client_id(api, "portal")]))
    assert api.call("GET", CUSTOMERS, user="alice").status_code == 200
    with watch(api) as seen:
        response = api.call("POST", "/api/customers", user="bob", client="reporting", json_body={})
    assert_not_allowed(response, NOT_ALLOWED, api)
    assert seen.nothing, seen.describe()


# --- subscriptions bound to apps -------------------------------------------------------------


def test_a_subscription_bound_to_portal_refuses_a_dealer_sync_token(
    session_tokens: Api, fresh: Restart
) -> None:
    api = session_tokens
    fresh(SUBSCRIPTION_CLIENT_APP_IDS=json.dumps({"demo-portal": [client_id(api, "portal")]}))
    assert api.call("GET", CUSTOMERS, user="alice").status_code == 200  # demo-portal's key
    refused(api, VEHICLES, NOT_WITH_THIS_KEY, app="dealer-sync")
    refused(api, CUSTOMERS, NOT_WITH_THIS_KEY, user="bob", client="reporting")
    # The unbound subscription is unaffected: any app of the tenant, with demo-dealer's key.
    key = dealer_key(api)
    assert api.call("GET", VEHICLES, app="dealer-sync", key=key).status_code == 200
    assert api.call("GET", CUSTOMERS, user="alice", key=key).status_code == 200
    assert api.call("GET", CUSTOMERS, user="bob", client="reporting", key=key).status_code == 200


def test_the_allowlist_and_bindings_together(session_tokens: Api, fresh: Restart) -> None:
    api = session_tokens
    portal, dealer = client_id(api, "portal"), client_id(api, "dealer-sync")
    fresh(
        ALLOWED_CLIENT_APP_IDS=json.dumps([portal, dealer]),
        SUBSCRIPTION_CLIENT_APP_IDS=json.dumps({"demo-dealer": [dealer]}),
    )
    key = dealer_key(api)
    assert api.call("GET", VEHICLES, app="dealer-sync", key=key).status_code == 200
    assert api.call("GET", VEHICLES, app="dealer-sync").status_code == 200  # demo-portal: unbound
    refused(api, CUSTOMERS, NOT_WITH_THIS_KEY, user="alice", key=key)
    refused(api, CUSTOMERS, NOT_ALLOWED, user="bob", client="reporting")  # not allowed at all


# --- malformed settings fail fast ------------------------------------------------------------


def test_malformed_settings_fail_fast_and_every_request_is_500(
    session_tokens: Api, fresh: Restart
) -> None:
    api = session_tokens
    with pytest.raises(SettingsError, match="SUBSCRIPTION_CLIENT_APP_IDS"):
        fresh(SUBSCRIPTION_CLIENT_APP_IDS=json.dumps({"no-such-subscription": [GUID]}))
    with watch(api) as seen:
        response = api.call("GET", CUSTOMERS, user="alice")
    body = assert_error(response, 500)
    assert body["code"] == "internal_error"
    assert seen.nothing, seen.describe()


GUID = "c9336fe4-744f-47c5-bf53-9b459f5eb5b1"
OTHER_GUID = "36b4cf69-811d-44fe-898b-657ecd8060ab"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALLOWED_CLIENT_APP_IDS", "portal"),
        ("ALLOWED_CLIENT_APP_IDS", json.dumps(GUID)),
        ("ALLOWED_CLIENT_APP_IDS", json.dumps({"portal": GUID})),
        ("ALLOWED_CLIENT_APP_IDS", json.dumps(["portal"])),
        ("ALLOWED_CLIENT_APP_IDS", json.dumps([GUID, 7])),
        ("ALLOWED_CLIENT_APP_IDS", json.dumps(["{" + GUID + "}"])),
        # A trailing line break inside JSON: nothing trims it; `re.match` with `$` took it.
        ("ALLOWED_CLIENT_APP_IDS", json.dumps([GUID + "\n"])),
        ("SUBSCRIPTION_CLIENT_APP_IDS", "not json"),
        ("SUBSCRIPTION_CLIENT_APP_IDS", json.dumps([GUID])),
        ("SUBSCRIPTION_CLIENT_APP_IDS", json.dumps({"portal": GUID})),
        ("SUBSCRIPTION_CLIENT_APP_IDS", json.dumps({"portal": []})),
        ("SUBSCRIPTION_CLIENT_APP_IDS", json.dumps({"portal": [GUID + "\n"]})),
        ("SUBSCRIPTION_CLIENT_APP_IDS", json.dumps({"secret-looking-name": [GUID]})),
    ],
)
def test_malformed_client_app_settings_name_the_setting_not_the_value(
    name: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env({**GOOD, name: value})
    for part in (value, "secret-looking-name", GUID):
        assert part not in str(caught.value)


def test_a_binding_outside_the_allowlist_fails_fast() -> None:
    env = {
        **GOOD,
        "ALLOWED_CLIENT_APP_IDS": json.dumps([GUID]),
        "SUBSCRIPTION_CLIENT_APP_IDS": json.dumps({"portal": [OTHER_GUID]}),
    }
    with pytest.raises(SettingsError, match="SUBSCRIPTION_CLIENT_APP_IDS"):
        Settings.from_env(env)


def test_settings_are_read_and_normalised() -> None:
    env = {
        **GOOD,
        "ALLOWED_CLIENT_APP_IDS": json.dumps([GUID.upper(), OTHER_GUID]),
        "SUBSCRIPTION_CLIENT_APP_IDS": json.dumps({"portal": [GUID.upper()]}),
    }
    settings = Settings.from_env(env)
    assert settings.allowed_client_app_ids == {GUID, OTHER_GUID}
    assert settings.subscription_client_app_ids == {"portal": {GUID}}
    empty = Settings.from_env(GOOD)
    assert not empty.allowed_client_app_ids
    assert not empty.subscription_client_app_ids


def test_environment_guids_are_trimmed_as_a_whole() -> None:
    """Values of the environment lose surrounding white space before any check (Key Vault
    secrets and pasted values often end in a line break); what remains must be the whole GUID.
    The GUID is used only in its normalised form, never as given."""
    settings = Settings.from_env({**GOOD, "AZURE_TENANT_ID": GOOD["AZURE_TENANT_ID"] + "\n"})
    assert settings.tenant_id == GOOD["AZURE_TENANT_ID"]
    for bad in (GUID + "\nx", GUID + "0", "x" + GUID):
        with pytest.raises(SettingsError, match="AZURE_TENANT_ID"):
            Settings.from_env({**GOOD, "AZURE_TENANT_ID": bad})
