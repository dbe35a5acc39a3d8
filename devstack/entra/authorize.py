"""The requests behind interactive sign-in, checked the way Entra checks them, and the ways the
answer goes back to the app.

An authorize request is trusted in two steps: first the client and its redirect URI
(`trusted_client`; until then errors can only be shown on an error page), then the rest
(`parse_authorize`; its errors go to the redirect URI). A device-code request is the flow the
person's user code names. Either waits on the sign-in page as a `Pending`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from devstack.entra import pages, redirects
from devstack.entra.claims import ClaimsRequest, parse_claims
from devstack.entra.codes import check_challenge
from devstack.entra.devicecodes import DeviceFlow
from devstack.entra.emulator import Entra
from devstack.entra.errors import (
    ConsentRequired,
    InvalidRequest,
    InvalidScope,
    ProtocolError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from devstack.entra.scopes import OIDC_SCOPES, ScopeRequest, parse_scope
from devstack.entra.signin import SignIn
from devstack.tenant import App, RedirectUri

RESPONSE_MODES = ("query", "fragment", "form_post")
PROMPTS = ("login", "none", "consent", "select_account")


@dataclass(frozen=True)
class AuthorizeRequest:
    app: App
    registered: RedirectUri
    redirect_uri: str
    response_mode: str
    state: str | None
    nonce: str | None
    scope: str
    target: ScopeRequest | None  # None when only OpenID scopes were asked for
    prompt: str | None
    login_hint: str | None
    claims: ClaimsRequest
    code_challenge: str | None
    code_challenge_method: str


@dataclass(frozen=True)
class DeviceRequest:
    app: App
    flow: DeviceFlow
    target: ScopeRequest | None
    claims: ClaimsRequest


@dataclass(frozen=True)
class Pending:
    """A sign-in on the page: what for, and who has entered a password so far."""

    request: AuthorizeRequest | DeviceRequest
    sign_in: SignIn | None = None


def trusted_app(entra: Entra, client_id: str) -> App:
    if not client_id:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'client_id'."
        )
    app = entra.directory.app_by_client_id(client_id)
    if app is None:
        raise UnauthorizedClient(
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{entra.tenant.name}'.",
        )
    return app


def trusted_client(entra: Entra, params: dict[str, str]) -> tuple[App, RedirectUri, str]:
    app = trusted_app(entra, params.get("client_id", "").strip().lower())
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'redirect_uri'."
        )
    return app, redirects.registered(app, redirect_uri), redirect_uri


def parse_authorize(
    entra: Entra,
    params: dict[str, str],
    app: App,
    registered: RedirectUri,
    redirect_uri: str,
    response_mode: str,
) -> AuthorizeRequest:
    response_type = params.get("response_type", "")
    if not response_type:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'response_type'."
        )
    if response_type.split() != ["code"]:
        raise UnsupportedResponseType(
            700054, f"response_type '{response_type}' is not enabled for the application."
        )
    if response_mode not in RESPONSE_MODES:
        raise InvalidRequest(70007, f"The response_mode '{response_mode}' is not supported.")
    prompt = params.get("prompt") or None
    if prompt is not None and prompt not in PROMPTS:
        raise InvalidRequest(90023, f"Invalid prompt parameter value '{prompt}'.")
    scope = params.get("scope", "").strip()
    if not scope:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'scope'."
        )
    target = target_of(entra, scope)
    if target is not None and not target.is_default:
        held = entra.directory.consented_scopes(app, target.resource)
        if any(s not in held for s in target.names):
            raise ConsentRequired(
                65001,
                f"The user or administrator has not consented to use the application with ID "
                f"'{app.client_id}' named '{app.name}'. Send an interactive authorization "
                "request for this user and resource.",
            )
    challenge = params.get("code_challenge") or None
    method = check_challenge(challenge, params.get("code_challenge_method") or None)
    return AuthorizeRequest(
        app=app,
        registered=registered,
        redirect_uri=redirect_uri,
        response_mode=response_mode,
        state=params.get("state"),
        nonce=params.get("nonce"),
        scope=scope,
        target=target,
        prompt=prompt,
        login_hint=params.get("login_hint") or None,
        claims=parse_claims(params.get("claims")),
        code_challenge=challenge,
        code_challenge_method=method,
    )


def target_of(entra: Entra, scope: str) -> ScopeRequest | None:
    if all(s.lower() in OIDC_SCOPES for s in scope.split()):
        return None
    try:
        return parse_scope(entra.directory, scope)
    except InvalidScope:
        raise
    except ProtocolError as exc:
        raise InvalidScope(exc.code, exc.message) from None


# --- answering the app ---------------------------------------------------------------------------


def answer(mode: str, redirect_uri: str, fields: dict[str, str]) -> Response:
    target = redirects.response_uri(redirect_uri)
    if mode == "form_post":
        return pages.form_post(target, fields)
    if mode == "fragment":
        return RedirectResponse(f"{target}#{urlencode(fields)}", 302)
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode(fields)}", 302)


def error_fields(exc: ProtocolError, state: str | None) -> dict[str, str]:
    fields = {"error": exc.error, "error_description": f"AADSTS{exc.code}: {exc.message}"}
    if exc.suberror:
        fields["error_subcode"] = exc.suberror
    if state is not None:
        fields["state"] = state
    return fields
