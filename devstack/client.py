"""A client app, as the developer portal's steps 1–3 describe it, built on MSAL.

Step 1 (request the right scopes) is the demo tenant's consent; step 2 (get a token) is MSAL
against the Entra emulator; step 3 (call the API) is a request with the token and the
subscription key. Nothing here is special to the emulator except the authority it points at.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import requests

from devstack.config import read_env, stack_dir
from devstack.entra import msal_session
from devstack.pki import Material, ensure_material
from devstack.tenant import Tenant, load_tenant

CACHE_FILE = "msal-cache.json"  # in the stack's folder, with the tenant's fingerprint


class ClientError(Exception):
    """Entra refused a token request; the message is Entra's error code and description."""


@dataclass
class DevClient:
    tenant: Tenant
    material: Material
    settings: dict[str, str]

    @classmethod
    def from_stack(cls, folder: Path | None = None) -> DevClient:
        folder = folder or stack_dir()
        env_file = folder / "stack.env"
        if not env_file.exists():
            raise FileNotFoundError(
                f"{env_file} does not exist: start the dev stack first (make run)"
            )
        settings = read_env(env_file)
        tenant = load_tenant(dataverse_url=settings["DATAVERSE_URL"])
        return cls(tenant, ensure_material(folder, tenant), settings)

    @property
    def api_url(self) -> str:
        return self.settings["DEVSTACK_API_URL"].rstrip("/")

    @property
    def subscription_key(self) -> str:
        """The demo client's key (`demo-portal`)."""
        return self.settings["DEVSTACK_SUBSCRIPTION_KEY"]

    @property
    def authority(self) -> str:
        return f"{self.settings['AZURE_AUTHORITY_HOST']}/{self.tenant.id}"

    @property
    def api_scope_prefix(self) -> str:
        return f"api://{self.tenant.app('central-api').client_id}"

    def _cache(self) -> msal.SerializableTokenCache:
        """MSAL's token cache from `msal-cache.json`, empty unless it was saved for this very
        tenant: a token issued before tenant.toml changed may lack a role or scope the tenant
        now grants (or hold one it no longer does), and MSAL would keep returning it until it
        expires. An older file without the tenant's fingerprint is dropped the same way."""
        cache = msal.SerializableTokenCache()
        path = self.material.folder / CACHE_FILE
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return cache
        if isinstance(saved, dict) and saved.get("tenant") == self.tenant.fingerprint:
            cache.deserialize(json.dumps(saved.get("msal", {})))
        return cache

    def _save(self, cache: msal.SerializableTokenCache) -> None:
        if cache.has_state_changed:
            path = self.material.folder / CACHE_FILE
            saved = {"tenant": self.tenant.fingerprint, "msal": json.loads(cache.serialize())}
            path.write_text(json.dumps(saved))
            path.chmod(0o600)

    def user_token(
        self, user: str, *, client: str = "portal", scopes: list[str] | None = None
    ) -> str:
        """An access token for our API, for `user` signed in to client app `client`."""
        who = self.tenant.user(user)
        app_reg = self.tenant.app(client)
        full_scopes = [
            s if "://" in s else f"{self.api_scope_prefix}/{s}" for s in scopes or [".default"]
        ]
        cache = self._cache()
        credential = self.material.client_secret(client) if app_reg.confidential else None
        app: Any = (
            msal.ConfidentialClientApplication if credential else msal.PublicClientApplication
        )(
            app_reg.client_id,
            client_credential=credential,
            authority=self.authority,
            instance_discovery=False,
            http_client=self._session(),
            token_cache=cache,
        )
        accounts = app.get_accounts(username=who.upn)
        result = app.acquire_token_silent(full_scopes, account=accounts[0]) if accounts else None
        if not result:
            # A real client app signs the user in interactively; a script cannot, so it uses the
            # resource-owner password grant, which MSAL marks deprecated for public clients.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                result = app.acquire_token_by_username_password(
                    who.upn, self.material.password(user), scopes=full_scopes
                )
        self._save(cache)
        return _access_token(result)

    def app_token(self, client: str) -> str:
        """An application token for our API, for confidential client app `client`."""
        app_reg = self.tenant.app(client)
        app = msal.ConfidentialClientApplication(
            app_reg.client_id,
            client_credential=self.material.client_secret(client),
            authority=self.authority,
            instance_discovery=False,
            http_client=self._session(),
            token_cache=self._cache(),
        )
        result = app.acquire_token_for_client([f"{self.api_scope_prefix}/.default"])
        self._save(app.token_cache)
        return _access_token(result)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        subscription_key: str | None = None,
    ) -> requests.Response:
        """Step 3: call the API with the token and the demo subscription key."""
        sent = {"Ocp-Apim-Subscription-Key": subscription_key or self.subscription_key}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        url = self.api_url + "/" + path.lstrip("/")
        with self._session() as session:
            return session.request(
                method.upper(),
                url,
                headers=sent,
                data=None if body is None else json.dumps(body),
                timeout=60,
            )

    def _session(self) -> requests.Session:
        """Trusts the dev CA whatever REQUESTS_CA_BUNDLE says in this shell (requests lets that
        variable override a session's `verify`), and puts back the port MSAL drops from the
        password grant's user-realm URL."""
        return msal_session(
            self.settings["AZURE_AUTHORITY_HOST"], self.settings["REQUESTS_CA_BUNDLE"]
        )


def _access_token(result: dict[str, Any] | None) -> str:
    if not result or "access_token" not in result:
        result = result or {}
        description = str(result.get("error_description", "")).split("\r\n", 1)[0]
        raise ClientError(f"{result.get('error', 'no token')}: {description}")
    return str(result["access_token"])
