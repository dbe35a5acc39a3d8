"""Interactive sign-in: the authorize endpoint (authorization code with PKCE), the device-code
endpoints, the sign-in page with its second-factor step, and sign-out.

    GET  /{tenant}/oauth2/v2.0/authorize   response_type=code, client_id, redirect_uri, scope,
                                           state, nonce, prompt, login_hint, claims,
                                           code_challenge(_method), response_mode
    POST /{tenant}/login                   the sign-in page's form (user name and password)
    POST /{tenant}/mfa                     the second-factor step's form
    POST /{tenant}/oauth2/v2.0/devicecode  client_id, scope, claims -> device_code, user_code...
    GET  /devicelogin, POST /devicelogin   the page where a person types the user code
    GET  /{tenant}/oauth2/v2.0/logout      ends the browser session; post_logout_redirect_uri

Errors follow Entra: until the client and its redirect URI are known good, the browser sees an
error page (never a redirect to an unregistered URI); after that, the error goes to the redirect
URI as `error`, `error_description` and `state`. The sign-in asks for a second factor when the
request's `claims` name a conditional-access policy (`capolids`) or an authentication context
(`acrs`), or when a policy covers the user and the requested resource; the browser session then
remembers it, so the next authorize request signs in silently.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from devstack.entra import pages, redirects
from devstack.entra.claims import ClaimsRequest, parse_claims
from devstack.entra.codes import IssuedCode, check_challenge
from devstack.entra.devicecodes import EXPIRES_IN, DeviceFlow
from devstack.entra.emulator import Entra
from devstack.entra.errors import (
    AccessDenied,
    ConsentRequired,
    InteractionRequired,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    LoginRequired,
    ProtocolError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from devstack.entra.http import cors_headers, read_form
from devstack.entra.scopes import OIDC_SCOPES, ScopeRequest, parse_scope
from devstack.entra.signin import SESSION_COOKIE, SESSION_LIFETIME, SignIn
from devstack.entra.tokens import client_info
from devstack.tenant import App, RedirectUri, User

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


def _entra(request: Request) -> Entra:
    entra: Entra = request.app.state.entra
    return entra


# --- authorize -----------------------------------------------------------------------------------


async def authorize(request: Request) -> Response:
    entra = _entra(request)
    params = dict(request.query_params)
    try:
        entra.directory.check_tenant(request.path_params["tenant"])
        app, registered, redirect_uri = _trusted_client(entra, params)
    except ProtocolError as exc:
        return pages.error(exc)
    request.state.caller = {"appid": app.client_id}
    response_mode = params.get("response_mode") or "query"
    mode = response_mode if response_mode in RESPONSE_MODES else "query"
    state = params.get("state")
    try:
        authz = _authorize_request(entra, params, app, registered, redirect_uri, response_mode)
    except ProtocolError as exc:
        return _answer(mode, redirect_uri, _error_fields(exc, state))
    return _continue(request, entra, authz)


def _trusted_client(entra: Entra, params: dict[str, str]) -> tuple[App, RedirectUri, str]:
    client_id = params.get("client_id", "").strip().lower()
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
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'redirect_uri'."
        )
    return app, redirects.registered(app, redirect_uri), redirect_uri


def _authorize_request(
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
    target = _target(entra, scope)
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


def _target(entra: Entra, scope: str) -> ScopeRequest | None:
    if all(s.lower() in OIDC_SCOPES for s in scope.split()):
        return None
    try:
        return parse_scope(entra.directory, scope)
    except InvalidScope:
        raise
    except ProtocolError as exc:
        raise InvalidScope(exc.code, exc.message) from None


def _continue(request: Request, entra: Entra, authz: AuthorizeRequest) -> Response:
    """Sign in silently from the browser session when Entra would, else show the page."""
    session = entra.sessions.get(request.cookies.get(SESSION_COOKIE))
    hinted = _user_by_hint(entra, authz.login_hint)
    usable = (
        session is not None
        and authz.prompt not in ("login", "select_account")
        and (hinted is None or hinted.name == session.user)
    )
    if session is not None and usable:
        if _step_up_reason(entra, authz, session) is None:
            return _complete(request, entra, Pending(authz, session))
        if authz.prompt == "none":
            return _answer(
                authz.response_mode,
                authz.redirect_uri,
                _error_fields(_mfa_needed(authz), authz.state),
            )
        return _ask_second_factor(request, entra, Pending(authz, session))
    if authz.prompt == "none":
        refusal = LoginRequired(
            50058,
            "A silent sign-in request was sent but no user is signed in. The cookies used to "
            "represent the user's session were not sent in the request to Azure AD.",
        )
        return _answer(authz.response_mode, authz.redirect_uri, _error_fields(refusal, authz.state))
    flow = entra.pending.add(Pending(authz))
    return _sign_in_page(request, entra, flow, authz.app, hinted.upn if hinted else "")


# --- the sign-in page ----------------------------------------------------------------------------


async def login(request: Request) -> Response:
    entra = _entra(request)
    fields = await read_form(request)
    flow = fields.get("flow", "")
    pending: Pending | None = entra.pending.get(flow)
    if pending is None:
        return pages.error(_flow_expired())
    app = pending.request.app
    request.state.caller = {"appid": app.client_id}
    if fields.get("action") == "cancel":
        entra.pending.discard(flow)
        return _refuse(request, entra, pending, _declined())
    username = fields.get("username", "").strip()
    user = entra.directory.user_by_upn(username)
    if user is None:
        refusal: ProtocolError = InvalidGrant(
            50034,
            f"The user account {{EmailHidden}} does not exist in the {entra.tenant.id} "
            "directory. To sign into this application, the account must be added to the "
            "directory.",
        )
        return _sign_in_page(request, entra, flow, app, username, refusal)
    expected = entra.material.password(user.name)
    if not hmac.compare_digest(fields.get("password", "").encode(), expected.encode()):
        refusal = InvalidGrant(
            50126, "Error validating credentials due to invalid username or password."
        )
        return _sign_in_page(request, entra, flow, app, username, refusal)
    request.state.caller = {"appid": app.client_id, "oid": user.oid}
    entra.pending.discard(flow)
    signed_in = Pending(pending.request, SignIn(user.name))
    if _step_up_reason(entra, pending.request, SignIn(user.name)) is not None:
        return _ask_second_factor(request, entra, signed_in)
    return _complete(request, entra, signed_in)


async def second_factor(request: Request) -> Response:
    entra = _entra(request)
    form = await read_form(request)
    flow = form.get("flow", "")
    pending: Pending | None = entra.pending.get(flow)
    if pending is None or pending.sign_in is None:
        return pages.error(_flow_expired())
    entra.pending.discard(flow)
    request.state.caller = {"appid": pending.request.app.client_id}
    if form.get("action") != "approve":
        return _refuse(
            request,
            entra,
            pending,
            AccessDenied(500121, "Authentication failed during strong authentication request."),
        )
    stepped = pending.sign_in.stepped_up(pending.request.claims.contexts)
    return _complete(request, entra, replace(pending, sign_in=stepped))


def _sign_in_page(
    request: Request,
    entra: Entra,
    flow: str,
    app: App,
    username: str = "",
    error: ProtocolError | None = None,
) -> Response:
    return pages.sign_in(
        _path(entra, "login"),
        flow,
        app_name=app.name,
        users=list(entra.tenant.users.values()),
        username=username,
        error=error,
    )


def _ask_second_factor(request: Request, entra: Entra, pending: Pending) -> Response:
    assert pending.sign_in is not None
    reason = _step_up_reason(entra, pending.request, pending.sign_in) or "verify your identity"
    flow = entra.pending.add(pending)
    user = entra.tenant.user(pending.sign_in.user)
    return pages.second_factor(
        _path(entra, "mfa"), flow, display_name=user.display_name, reason=reason
    )


def _step_up_reason(
    entra: Entra, request: AuthorizeRequest | DeviceRequest, sign_in: SignIn
) -> str | None:
    """Why this sign-in needs a second factor first, or None."""
    claims = request.claims
    if any(c not in sign_in.contexts for c in claims.contexts):
        return "the app asks for a stronger sign-in (authentication context)."
    if sign_in.mfa:
        return None
    if claims.policies:
        return "a conditional-access policy requires multi-factor authentication."
    user = entra.tenant.user(sign_in.user)
    if request.target is not None and entra.directory.policy_for(user, request.target.resource):
        return "a conditional-access policy requires multi-factor authentication."
    return None


def _complete(request: Request, entra: Entra, pending: Pending) -> Response:
    """The user is signed in: remember the browser session, then answer the app."""
    assert pending.sign_in is not None
    user = entra.tenant.user(pending.sign_in.user)
    request.state.caller = {"appid": pending.request.app.client_id, "oid": user.oid}
    current = request.cookies.get(SESSION_COOKIE)
    entra.sessions.discard(current)
    session = entra.sessions.add(pending.sign_in)
    authz = pending.request
    if isinstance(authz, DeviceRequest):
        entra.device_codes.decide(authz.flow.device_code, pending.sign_in)
        response: Response = pages.message(
            "You're signed in",
            f"You have signed in to {authz.app.name} on your device. You may now close this "
            "window.",
        )
    else:
        code = entra.codes.issue(
            IssuedCode(
                client_id=authz.app.client_id,
                redirect_uri=authz.redirect_uri,
                platform=authz.registered.platform,
                scope=authz.scope,
                sign_in=pending.sign_in,
                nonce=authz.nonce,
                code_challenge=authz.code_challenge,
                code_challenge_method=authz.code_challenge_method,
            )
        )
        fields = {"code": code}
        if authz.state is not None:
            fields["state"] = authz.state
        fields["client_info"] = _client_info(entra, user)
        fields["session_state"] = session[:36]
        response = _answer(authz.response_mode, authz.redirect_uri, fields)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        max_age=SESSION_LIFETIME,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return response


def _refuse(request: Request, entra: Entra, pending: Pending, refusal: ProtocolError) -> Response:
    authz = pending.request
    if isinstance(authz, DeviceRequest):
        entra.device_codes.decide(authz.flow.device_code, None)
        return pages.message("Sign-in cancelled", "You can close this window.")
    return _answer(authz.response_mode, authz.redirect_uri, _error_fields(refusal, authz.state))


# --- answering the app ---------------------------------------------------------------------------


def _answer(mode: str, redirect_uri: str, fields: dict[str, str]) -> Response:
    target = redirects.response_uri(redirect_uri)
    if mode == "form_post":
        return pages.form_post(target, fields)
    if mode == "fragment":
        return RedirectResponse(f"{target}#{urlencode(fields)}", 302)
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode(fields)}", 302)


def _error_fields(exc: ProtocolError, state: str | None) -> dict[str, str]:
    fields = {"error": exc.error, "error_description": f"AADSTS{exc.code}: {exc.message}"}
    if exc.suberror:
        fields["error_subcode"] = exc.suberror
    if state is not None:
        fields["state"] = state
    return fields


def _client_info(entra: Entra, user: User) -> str:
    return client_info(user, entra.tenant.id)


def _mfa_needed(authz: AuthorizeRequest) -> InteractionRequired:
    return InteractionRequired(
        50076,
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must use multi-factor authentication to access the resource.",
    )


def _declined() -> AccessDenied:
    return AccessDenied(65004, "User declined to consent to access the app.")


def _flow_expired() -> InvalidRequest:
    return InvalidRequest(
        50089, "Authentication failed due to flow token expired. Start the sign-in again."
    )


def _user_by_hint(entra: Entra, hint: str | None) -> User | None:
    return entra.directory.user_by_upn(hint) if hint else None


def _path(entra: Entra, leaf: str) -> str:
    return f"/{entra.tenant.id}/{leaf}"


# --- device code ---------------------------------------------------------------------------------


async def devicecode(request: Request) -> Response:
    entra = _entra(request)
    entra.directory.check_tenant(request.path_params["tenant"])
    form = await read_form(request)
    client_id = form.get("client_id", "").strip().lower()
    request.state.caller = {"appid": client_id} if client_id else None
    app = _trusted_app(entra, client_id)
    scope = form.get("scope", "").strip()
    if not scope:
        raise InvalidRequest(
            900144, "The request body must contain the following parameter: 'scope'."
        )
    _target(entra, scope)
    parse_claims(form.get("claims"))
    flow = entra.device_codes.start(app.client_id, scope, form.get("claims") or None)
    uri = f"{entra.base_url}/devicelogin"
    body: dict[str, Any] = {
        "user_code": flow.user_code,
        "device_code": flow.device_code,
        "verification_uri": uri,
        "expires_in": EXPIRES_IN,
        "interval": entra.device_codes.interval,
        "message": (
            f"To sign in, use a web browser to open the page {uri} and enter the code "
            f"{flow.user_code} to authenticate."
        ),
    }
    return JSONResponse(body, headers=cors_headers(request))


def _trusted_app(entra: Entra, client_id: str) -> App:
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


async def devicelogin_page(request: Request) -> Response:
    return pages.device_code("/devicelogin")


async def devicelogin(request: Request) -> Response:
    entra = _entra(request)
    form = await read_form(request)
    flow = entra.device_codes.by_user_code(form.get("otc", ""))
    if flow is None:
        return pages.device_code(
            "/devicelogin",
            error=InvalidRequest(
                70018,
                "Invalid verification code due to the user typing in a wrong user code for the "
                "device code flow. Authorization is not approved.",
            ),
        )
    app = _trusted_app(entra, flow.client_id)
    request.state.caller = {"appid": app.client_id}
    device = DeviceRequest(app, flow, _target(entra, flow.scope), parse_claims(flow.claims))
    handle = entra.pending.add(Pending(device))
    return pages.sign_in(
        _path(entra, "login"),
        handle,
        app_name=app.name,
        users=list(entra.tenant.users.values()),
    )


# --- sign-out ------------------------------------------------------------------------------------


async def logout(request: Request) -> Response:
    entra = _entra(request)
    entra.sessions.discard(request.cookies.get(SESSION_COOKIE))
    target = request.query_params.get("post_logout_redirect_uri", "")
    response: Response
    if target and _registered_anywhere(entra, target):
        response = RedirectResponse(target, 302)
    else:
        response = pages.message("You signed out of your account", "You can close this window.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _registered_anywhere(entra: Entra, uri: str) -> bool:
    for app in entra.tenant.apps.values():
        try:
            redirects.registered(app, uri)
        except ProtocolError:
            continue
        return True
    return False


ROUTES = [
    Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET"]),
    Route("/{tenant}/login", login, methods=["POST"]),
    Route("/{tenant}/mfa", second_factor, methods=["POST"]),
    Route("/{tenant}/oauth2/v2.0/devicecode", devicecode, methods=["POST"]),
    Route("/devicelogin", devicelogin_page, methods=["GET"]),
    Route("/devicelogin", devicelogin, methods=["POST"]),
    Route("/{tenant}/oauth2/v2.0/logout", logout, methods=["GET"]),
]
