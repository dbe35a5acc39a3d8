"""Fixtures for driving the API end to end: the whole dev stack (`stack`, from tests/conftest.py)
with tokens for every demo user and client app, and the emulators' request logs.

`api.call("GET", "/api/customers", user="alice")` sends the demo subscription key and Alice's
token from `portal`; `app="dealer-sync"` sends that app's client-credentials token; `token=`
sends any token you like (or none with `token=None`). Tokens are acquired once per test session.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import requests

from devstack.client import DevClient
from devstack.stack import RunningStack

UNSET: Any = object()


@dataclass
class Api:
    stack: RunningStack
    client: DevClient
    http: requests.Session
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return self.stack.api_url

    @property
    def subscription_key(self) -> str:
        return self.stack.settings["DEVSTACK_SUBSCRIPTION_KEY"]

    def user_token(self, user: str, client: str = "portal") -> str:
        key = (user, client)
        if key not in self._tokens:
            self._tokens[key] = self.client.user_token(user, client=client)
        return self._tokens[key]

    def app_token(self, client: str) -> str:
        key = ("app", client)
        if key not in self._tokens:
            self._tokens[key] = self.client.app_token(client)
        return self._tokens[key]

    def forget_tokens_signed_by(self, kids: Collection[str]) -> None:
        """Drop the session's tokens that these (retired) signing keys made: a test that rotates
        Entra's keys may be the first to ask for one, and later tests must not inherit it."""
        for key, token in list(self._tokens.items()):
            if jwt.get_unverified_header(token)["kid"] in kids:
                del self._tokens[key]

    def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        client: str = "portal",
        app: str | None = None,
        token: str | None = UNSET,
        key: str | None = UNSET,
        json_body: Any = UNSET,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> requests.Response:
        sent: dict[str, str] = {}
        subscription = self.subscription_key if key is UNSET else key
        if subscription is not None:
            sent["Ocp-Apim-Subscription-Key"] = subscription
        if token is UNSET:
            if app is not None:
                token = self.app_token(app)
            elif user is not None:
                token = self.user_token(user, client)
            else:
                token = None
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {}
        if json_body is not UNSET:
            kwargs["json"] = json_body
        elif data is not None:
            kwargs["data"] = data
        sent.update(headers or {})
        return self.http.request(method, self.url + path, headers=sent, timeout=60, **kwargs)

    # --- the emulators' control planes ------------------------------------------------------

    def _control(self, base: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{base}/_emulator/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def dataverse_control(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._control(self.stack.dataverse_url, method, path, **kwargs)

    def entra_control(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._control(self.stack.entra_url, method, path, **kwargs)

    def dataverse_requests(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self.dataverse_control("GET", "requests", params={"since": since})["requests"])

    def entra_requests(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self.entra_control("GET", "requests", params={"since": since})["requests"])

    def marks(self) -> tuple[int, int]:
        """The latest sequence numbers of the Entra and Dataverse logs: pass them as `since`."""
        entra = self.entra_requests()
        dataverse = self.dataverse_requests()
        return (entra[-1]["seq"] if entra else 0, dataverse[-1]["seq"] if dataverse else 0)


@pytest.fixture(scope="session")
def api(stack: RunningStack) -> Iterator[Api]:
    with requests.Session() as http:
        http.verify = str(stack.ca_bundle)
        http.trust_env = False
        yield Api(stack, DevClient.from_stack(stack.material.folder), http)


@pytest.fixture
def faults(api: Api) -> Iterator[Api]:
    """The same `api`, with every fault rule removed afterwards on both emulators."""
    yield api
    api.entra_control("DELETE", "faults")
    api.dataverse_control("DELETE", "faults")
