"""The token endpoint's grants: client credentials, on-behalf-of, password, refresh token,
authorization code (PKCE) and device code.

`TokenService.exchange` authenticates the client, runs the grant's checks in Entra's order and
returns the JSON body of a successful answer; every refusal is a `ProtocolError`. What the request
was (grant type, client, user) is written into an `Audit` as soon as it is known, so the request
log names the caller even when the answer is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.entra import redirects
from devstack.entra.assertions import validate_user_assertion
from devstack.entra.claims import parse_claims
from devstack.entra.clients import Client, ClientAuthenticator, Credentials
from devstack.entra.codes import AuthorizationCodes, verify_pkce
from devstack.entra.devicecodes import DeviceCodes
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
from devstack.entra.refresh import RefreshTokens, Session
from devstack.entra.scopes import (
    OIDC_SCOPES,
    ScopeRequest,
    parse_scope,
    require,
    resource_default,
)
from devstack.entra.signin import SignIn, check_password
from devstack.entra.tokens import Grant, TokenMinter, client_info
from devstack.pki import Material
from devstack.tenant import App, User

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PASSWORD = "password"
REFRESH_TOKEN = "refresh_token"
AUTHORIZATION_CODE = "authorization_code"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
SPA = "spa"


@dataclass(frozen=True)
class TokenRequest:
    form: dict[str, str]
    basic: tuple[str, str] | None  # HTTP Basic client credentials, if sent
    multi_tenant_alias: bool  # addressed as /common or /organizations rather than the tenant
    endpoint_version: int  # 2: /oauth2/v2.0/token (scope); 1: /oauth2/token (resource)
    origin: str | None = None  # the browser's Origin header: a cross-origin (CORS) request


@dataclass
class Audit:
    """Who asked, for the request log; and whether the answer may be read cross-origin."""

    grant_type: str | None = None
    caller: dict[str, str] = field(default_factory=dict)
    # Entra sends CORS headers for the redemptions of spa redirect URIs only: a page redeeming
    # anything else cannot read the answer (the browser reports a CORS error, as Entra's docs
    # show). Set once the grant knows it holds a spa code or refresh token.
    cross_origin: bool = False
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
        codes: AuthorizationCodes,
        device_codes: DeviceCodes,
        clock: Callable[[], float],
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._urls = urls
        self._refresh_tokens = refresh_tokens
        self._codes = codes
        self._device_codes = device_codes
        self._clock = clock
        self._material = material
        self._clients = ClientAuthenticator(directory, material, keys=keys, urls=urls)
        self._minter = TokenMinter(directory, keys, urls)
        self._grants: dict[str, Callable[[TokenRequest, Client, Audit], dict[str, Any]]] = {
            CLIENT_CREDENTIALS: self._client_credentials,
            JWT_BEARER: self._on_behalf_of,
            PASSWORD: self._password,
            REFRESH_TOKEN: self._refresh_token,
            AUTHORIZATION_CODE: self._authorization_code,
            DEVICE_CODE: self._device_code,
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
        if request.origin and client.confidential:
            # Entra keeps secrets out of browsers: no client credential is accepted cross-origin.
            raise _cross_origin_refused(request.origin)
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
        user, sign_in = validate_user_assertion(
            assertion,
            client=client.app,
            keys=self._keys,
            directory=self._directory,
            urls=self._urls,
            now=self._clock(),
        )
        audit.caller["oid"] = user.oid
        return self._delegated(request, client, user, sign_in, self._target(request))

    def _password(self, request: TokenRequest, client: Client, audit: Audit) -> dict[str, Any]:
        username = require(request.form, "username")
        password = require(request.form, "password")
        named = self._directory.user_by_upn(username)
        if named is not None:
            audit.caller["oid"] = named.oid  # the log names whom a wrong password was for
        user = check_password(self._directory, self._material, username, password)
        if parse_claims(request.form.get("claims")).step_up:
            raise _mfa_required(self._target(request).resource)
        return self._delegated(request, client, user, SignIn(user.name), self._target(request))

    def _refresh_token(self, request: TokenRequest, client: Client, audit: Audit) -> dict[str, Any]:
        session = self._refresh_tokens.find(require(request.form, "refresh_token"))
        if session is None or (self._refresh_tokens.expired(session) and not session.spa):
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
        _check_origin(request, SPA if session.spa else "public_client", audit)
        if self._refresh_tokens.expired(session):
            raise InvalidGrant(
                700084,
                "The refresh token was issued to a single page app (SPA), and therefore has a "
                "fixed, limited lifetime of 1.00:00:00, which cannot be extended. It is now "
                "expired and a new sign in request must be sent by the SPA to the sign in page.",
            )
        user = self._directory.tenant.users.get(session.user)
        if user is None:
            raise InvalidGrant(50034, "The user account does not exist in the directory.")
        audit.caller["oid"] = user.oid
        target = self._user_target(request, request.form.get("scope", ""))
        return self._delegated(request, client, user, session.sign_in, target, spa=session)

    def _authorization_code(
        self, request: TokenRequest, client: Client, audit: Audit
    ) -> dict[str, Any]:
        form = request.form
        code = require(form, "code")
        redirect_uri = require(form, "redirect_uri")
        registered = redirects.registered(client.app, redirect_uri)
        _check_origin(request, registered.platform, audit)
        if registered.platform == "web" and not client.confidential:
            raise InvalidClient(
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        issued = self._codes.redeem(code)
        if issued.client_id != client.app.client_id or issued.redirect_uri != redirect_uri:
            raise InvalidGrant(
                70000,
                "Provided grant is invalid or malformed. The authorization code was issued to "
                "another client or for another redirect URI.",
            )
        if issued.platform == SPA and issued.code_challenge is None:
            raise InvalidRequest(
                9002325,
                "Proof Key for Code Exchange is required for cross-origin authorization code "
                "redemption.",
            )
        verify_pkce(issued, form.get("code_verifier"))
        user = self._directory.tenant.user(issued.sign_in.user)
        audit.caller["oid"] = user.oid
        target = self._user_target(request, form.get("scope") or issued.scope)
        return self._delegated(
            request,
            client,
            user,
            issued.sign_in,
            target,
            nonce=issued.nonce,
            spa=issued.platform == SPA,
        )

    def _device_code(self, request: TokenRequest, client: Client, audit: Audit) -> dict[str, Any]:
        flow = self._device_codes.poll(require(request.form, "device_code"), client.app.client_id)
        assert flow.sign_in is not None
        user = self._directory.tenant.user(flow.sign_in.user)
        audit.caller["oid"] = user.oid
        target = self._user_target(request, flow.scope)
        return self._delegated(request, client, user, flow.sign_in, target)

    # --- shared steps -------------------------------------------------------------------------

    def _target(self, request: TokenRequest) -> ScopeRequest:
        if request.endpoint_version == 1:
            return resource_default(self._directory, require(request.form, "resource"))
        return parse_scope(self._directory, require(request.form, "scope"))

    def _user_target(self, request: TokenRequest, raw: str) -> ScopeRequest | frozenset[str]:
        """The resource asked for, or only OpenID scopes (a sign-in, as MSAL.js's login asks).

        Entra answers an OpenID-only request with an access token for Microsoft Graph, which
        the emulator does not serve: it answers with the ID token and refresh token alone."""
        if request.endpoint_version == 1:
            return self._target(request)
        names = raw.split()
        if not names:
            return self._target(request)  # the missing `scope`, refused as Entra does
        if all(s.lower() in OIDC_SCOPES for s in names):
            return frozenset(s.lower() for s in names)
        return parse_scope(self._directory, raw)

    def _delegated(
        self,
        request: TokenRequest,
        client: Client,
        user: User,
        sign_in: SignIn,
        target: ScopeRequest | frozenset[str],
        *,
        nonce: str | None = None,
        spa: bool | Session = False,
    ) -> dict[str, Any]:
        """A user's tokens. `spa` is True for a code sent to a spa redirect URI, or the spa
        refresh token's session whose fixed expiry the new refresh token keeps."""
        if isinstance(target, ScopeRequest):
            body = self._user_access_token(client, user, sign_in, target)
            oidc = target.oidc
        else:
            body, oidc = {"token_type": "Bearer", "scope": " ".join(sorted(target))}, target
        now = self._clock()
        if "offline_access" in oidc or request.endpoint_version == 1:
            carried = spa.expires_at if isinstance(spa, Session) else None
            token, session = self._refresh_tokens.issue(
                sign_in, client.app.client_id, spa=bool(spa), expires_at=carried
            )
            body["refresh_token"] = token
            if session.spa:
                body["refresh_token_expires_in"] = self._refresh_tokens.seconds_left(session)
        if "openid" in oidc:
            body["id_token"] = self._minter.id_token(client.app, user, now, nonce)
        if request.form.get("client_info") == "1":
            body["client_info"] = client_info(user, self._urls.tenant_id)
        return body

    def _user_access_token(
        self, client: Client, user: User, sign_in: SignIn, target: ScopeRequest
    ) -> dict[str, Any]:
        scopes = self._consented(client.app, target)
        policy = self._directory.policy_for(user, target.resource)
        if policy is not None and not sign_in.mfa:
            claims = {"access_token": {"capolids": {"essential": True, "values": [policy.id]}}}
            raise InteractionRequired(
                50079,
                "Due to a configuration change made by your administrator, or because you moved "
                "to a new location, you must enroll in multi-factor authentication to access "
                f"'{target.resource.client_id}'.",
                claims=json.dumps(claims, separators=(",", ":")),
            )
        now = self._clock()
        grant = Grant(
            client.app,
            client.acr,
            target.resource,
            user=user,
            scopes=scopes,
            methods=sign_in.methods,
            contexts=sign_in.contexts,
        )
        issued = self._minter.access_token(grant, now)
        prefix = self._directory.app_id_uri(target.resource).rstrip("/")
        return {
            "token_type": "Bearer",
            "scope": " ".join(f"{prefix}/{s}" for s in scopes),
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.ext_expires_in,
            "access_token": issued.access_token,
        }

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


def _mfa_required(resource: App) -> InteractionRequired:
    return InteractionRequired(
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must use multi-factor authentication to access "
        f"'{resource.client_id}'.",
    )


def _check_origin(request: TokenRequest, platform: str, audit: Audit) -> None:
    """Codes and refresh tokens of spa redirect URIs are redeemed cross-origin only; all others
    never cross-origin."""
    audit.cross_origin = platform == SPA
    if platform == SPA and not request.origin:
        raise InvalidRequest(
            9002327,
            "Tokens issued for the 'Single-Page Application' client-type may only be redeemed "
            "via cross-origin requests.",
        )
    if platform != SPA and request.origin:
        raise _cross_origin_refused(request.origin)


def _cross_origin_refused(origin: str) -> InvalidRequest:
    return InvalidRequest(
        9002326,
        "Cross-origin token redemption is permitted only for the 'Single-Page Application' "
        f"client-type. Request origin: '{origin}'.",
    )
