"""The token endpoint's grants: client credentials, on-behalf-of, password, refresh token.

`TokenService.exchange` authenticates the client, runs the grant's checks in Entra's order and
returns the JSON body of a successful answer; every refusal is a `ProtocolError`. What the request
was (grant type, client, user) is written into an `Audit` as soon as it is known, so the request
log names the caller even when the answer is an error.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.entra.assertions import validate_user_assertion
from devstack.entra.clients import Client, ClientAuthenticator, Credentials
from devstack.entra.directory import Directory
from devstack.entra.errors import (
    InteractionRequired,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnsupportedGrantType,
)
from devstack.entra.keys import KeyRing
from devstack.entra.metadata import Urls
from devstack.entra.refresh import RefreshTokens
from devstack.entra.scopes import ScopeRequest, parse_scope, require, resource_default
from devstack.entra.tokens import Grant, TokenMinter, client_info
from devstack.pki import Material
from devstack.tenant import App, User

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PASSWORD = "password"
REFRESH_TOKEN = "refresh_token"


@dataclass(frozen=True)
class TokenRequest:
    form: dict[str, str]
    basic: tuple[str, str] | None  # HTTP Basic client credentials, if sent
    multi_tenant_alias: bool  # addressed as /common or /organizations rather than the tenant
    endpoint_version: int  # 2: /oauth2/v2.0/token (scope); 1: /oauth2/token (resource)


@dataclass
class Audit:
    """Who asked, for the request log."""

    grant_type: str | None = None
    caller: dict[str, str] = field(default_factory=dict)
    client_auth: str | None = None  # "none", "secret", "certificate" or "federated"


class TokenService:
    def __init__(
        self,
        *,
        directory: Directory,
        keys: KeyRing,
        urls: Urls,
        material: Material,
        refresh_tokens: RefreshTokens,
        clock: Callable[[], float],
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._urls = urls
        self._refresh_tokens = refresh_tokens
        self._clock = clock
        self._material = material
        self._clients = ClientAuthenticator(directory, material, keys=keys, urls=urls)
        self._minter = TokenMinter(directory, keys, urls)
        self._grants: dict[str, Callable[[TokenRequest, Client, Audit], dict[str, Any]]] = {
            CLIENT_CREDENTIALS: self._client_credentials,
            JWT_BEARER: self._on_behalf_of,
            PASSWORD: self._password,
            REFRESH_TOKEN: self._refresh_token,
        }

    def exchange(self, request: TokenRequest, audit: Audit) -> dict[str, Any]:
        grant_type = require(request.form, "grant_type")
        audit.grant_type = grant_type
        handler = self._grants.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType(
                70003, f"The app requested an unsupported grant type '{grant_type}'."
            )
        creds = Credentials.from_request(request.form, request.basic)
        if creds.client_id:
            audit.caller["appid"] = creds.client_id
        client = self._clients.authenticate(creds, self._urls.token_endpoints(), self._clock())
        audit.caller["appid"] = client.app.client_id
        audit.client_auth = client.method
        if request.multi_tenant_alias:
            # The demo tenant's registrations are single-tenant (AzureADMyOrg).
            raise InvalidRequest(
                50194,
                f"Application '{client.app.client_id}'({client.app.name}) is not configured as a "
                "multi-tenant application. Usage of the /common endpoint is not supported for "
                "such applications created after '10/15/2018'. Use a tenant-specific endpoint or "
                "configure the application to be multi-tenant.",
            )
        return handler(request, client, audit)

    # --- grants -------------------------------------------------------------------------------

    def _client_credentials(
        self, request: TokenRequest, client: Client, audit: Audit
    ) -> dict[str, Any]:
        _require_confidential(client)
        target = self._target(request)
        if not target.is_default or target.oidc:
            raise InvalidScope(
                1002012,
                f"The provided value for scope {request.form.get('scope', '')} is not valid. "
                "Client credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        roles = self._directory.app_roles(client.app, target.resource)
        grant = Grant(client.app, client.acr, target.resource, roles=roles)
        issued = self._minter.access_token(grant, self._clock())
        return {
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.ext_expires_in,
            "access_token": issued.access_token,
        }

    def _on_behalf_of(self, request: TokenRequest, client: Client, audit: Audit) -> dict[str, Any]:
        form = request.form
        use = require(form, "requested_token_use")
        if use != "on_behalf_of":
            raise InvalidRequest(
                9002313,
                "Invalid request. Request is malformed or invalid. "
                f"'requested_token_use' must be 'on_behalf_of', not '{use}'.",
            )
        _require_confidential(client)
        assertion = require(form, "assertion")
        user = validate_user_assertion(
            assertion,
            client=client.app,
            keys=self._keys,
            directory=self._directory,
            urls=self._urls,
            now=self._clock(),
        )
        audit.caller["oid"] = user.oid
        return self._delegated(request, client, user, self._target(request))

    def _password(self, request: TokenRequest, client: Client, audit: Audit) -> dict[str, Any]:
        username = require(request.form, "username")
        password = require(request.form, "password")
        user = self._directory.user_by_upn(username)
        if user is None:
            raise InvalidGrant(
                50034,
                f"The user account {{EmailHidden}} does not exist in the {self._urls.tenant_id} "
                "directory. To sign into this application, the account must be added to the "
                "directory.",
            )
        audit.caller["oid"] = user.oid
        expected = self._material.password(user.name)
        if not hmac.compare_digest(password.encode(), expected.encode()):
            raise InvalidGrant(
                50126, "Error validating credentials due to invalid username or password."
            )
        return self._delegated(request, client, user, self._target(request))

    def _refresh_token(self, request: TokenRequest, client: Client, audit: Audit) -> dict[str, Any]:
        session = self._refresh_tokens.redeem(require(request.form, "refresh_token"))
        if session is None:
            raise InvalidGrant(
                9002313,
                "Invalid request. Request is malformed or invalid. The refresh token is "
                "not valid or has expired.",
            )
        if session.client_id != client.app.client_id:
            raise InvalidGrant(
                70000,
                "Provided grant is invalid or malformed. The refresh token was issued to a "
                "different client.",
            )
        user = self._directory.tenant.users.get(session.user)
        if user is None:
            raise InvalidGrant(50034, "The user account does not exist in the directory.")
        audit.caller["oid"] = user.oid
        return self._delegated(request, client, user, self._target(request))

    # --- shared steps -------------------------------------------------------------------------

    def _target(self, request: TokenRequest) -> ScopeRequest:
        if request.endpoint_version == 1:
            return resource_default(self._directory, require(request.form, "resource"))
        return parse_scope(self._directory, require(request.form, "scope"))

    def _delegated(
        self, request: TokenRequest, client: Client, user: User, target: ScopeRequest
    ) -> dict[str, Any]:
        scopes = self._consented(client.app, target)
        policy = self._directory.policy_for(user, target.resource)
        if policy is not None:
            claims = {"access_token": {"capolids": {"essential": True, "values": [policy.id]}}}
            raise InteractionRequired(
                50079,
                "Due to a configuration change made by your administrator, or because you moved "
                "to a new location, you must enroll in multi-factor authentication to access "
                f"'{target.resource.client_id}'.",
                claims=json.dumps(claims, separators=(",", ":")),
            )
        now = self._clock()
        issued = self._minter.access_token(
            Grant(client.app, client.acr, target.resource, user=user, scopes=scopes), now
        )
        prefix = self._directory.app_id_uri(target.resource).rstrip("/")
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(f"{prefix}/{s}" for s in scopes),
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.ext_expires_in,
            "access_token": issued.access_token,
        }
        if "offline_access" in target.oidc or request.endpoint_version == 1:
            body["refresh_token"] = self._refresh_tokens.issue(user.name, client.app.client_id)
        if "openid" in target.oidc:
            body["id_token"] = self._minter.id_token(client.app, user, now)
        if request.form.get("client_info") == "1":
            body["client_info"] = client_info(user, self._urls.tenant_id)
        return body

    def _consented(self, client: App, target: ScopeRequest) -> tuple[str, ...]:
        """Every scope the client holds on the resource: Entra puts them all in `scp`."""
        held = self._directory.consented_scopes(client, target.resource)
        wanted = () if target.is_default else target.names
        if not held or any(s not in held for s in wanted):
            raise InvalidGrant(
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{client.client_id}' named '{client.name}'. Send an interactive authorization "
                "request for this user and resource.",
                suberror="consent_required",
            )
        order = {s: i for i, s in enumerate(target.resource.scopes)}
        return tuple(sorted(held, key=lambda s: order.get(s, len(order))))


def _require_confidential(client: Client) -> None:
    if not client.confidential:
        raise InvalidClient(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or "
            "'client_secret'.",
        )
