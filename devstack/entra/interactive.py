"""Interactive sign-in: the authorize endpoint (authorization code with PKCE), the sign-in page
with its second-factor step, and sign-out. The device code flow's pages (`device.py`) end on
the same sign-in page.

    GET  /{tenant}/oauth2/v2.0/authorize   response_type=code, client_id, redirect_uri, scope,
                                           state, nonce, prompt, login_hint, claims,
                                           code_challenge(_method), response_mode
    POST /{tenant}/login                   the sign-in page's form (user name and password)
    POST /{tenant}/mfa                     the second-factor step's form
    GET  /{tenant}/oauth2/v2.0/logout      ends the browser session; post_logout_redirect_uri

Errors follow Entra: until the client and its redirect URI are known good, the browser sees an
error page (never a redirect to an unregistered URI); after that, the error goes to the redirect
URI as `error`, `error_description` and `state`. The sign-in asks for a second factor when the
request's `claims` name a conditional-access policy (`capolids`) or an authentication context
(`acrs`), or when a policy covers the user and the requested resource; the browser session then
remembers it, so the next authorize request signs in silently.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from devstack.entra import pages, redirects
from devstack.entra.authorize import (
    RESPONSE_MODES,
    AuthorizeRequest,
    DeviceRequest,
    Pending,
    answer,
    error_fields,
    parse_authorize,
    trusted_client,
)
from devstack.entra.codes import IssuedCode
from devstack.entra.emulator import Entra
from devstack.entra.errors import (
    AccessDenied,
    InteractionRequired,
    InvalidRequest,
    LoginRequired,
    ProtocolError,
)
from devstack.entra.http import read_form
from devstack.entra.signin import SESSION_COOKIE, SESSION_LIFETIME, SignIn, check_password
from devstack.entra.tokens import client_info
from devstack.tenant import App, User


def _entra(request: Request) -> Entra:
    entra: Entra = request.app.state.entra
    return entra


# --- authorize -----------------------------------------------------------------------------------


async def authorize(request: Request) -> Response:
    entra = _entra(request)
    params = dict(request.query_params)
    try:
        entra.directory.check_tenant(request.path_params["tenant"])
        app, registered, redirect_uri = trusted_client(entra, params)
    except ProtocolError as exc:
        return pages.error(exc)
    request.state.caller = {"appid": app.client_id}
    response_mode = params.get("response_mode") or "query"
    mode = response_mode if response_mode in RESPONSE_MODES else "query"
    state = params.get("state")
    try:
        authz = parse_authorize(entra, params, app, registered, redirect_uri, response_mode)
    except ProtocolError as exc:
        return answer(mode, redirect_uri, error_fields(exc, state))
    return _continue(request, entra, authz)


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
            return answer(
                authz.response_mode,
                authz.redirect_uri,
                error_fields(_mfa_needed(authz), authz.state),
            )
        return _ask_second_factor(request, entra, Pending(authz, session))
    if authz.prompt == "none":
        refusal = LoginRequired(
            50058,
            "A silent sign-in request was sent but no user is signed in. The cookies used to "
            "represent the user's session were not sent in the request to Azure AD.",
        )
        return answer(authz.response_mode, authz.redirect_uri, error_fields(refusal, authz.state))
    flow = entra.pending.add(Pending(authz))
    return sign_in_page(entra, flow, authz.app, hinted.upn if hinted else "")


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
    try:
        user = check_password(entra.directory, entra.material, username, fields.get("password", ""))
    except ProtocolError as refusal:
        return sign_in_page(entra, flow, app, username, refusal)
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


def sign_in_page(
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
        response = answer(authz.response_mode, authz.redirect_uri, fields)
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
    return answer(authz.response_mode, authz.redirect_uri, error_fields(refusal, authz.state))


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
    Route("/{tenant}/oauth2/v2.0/logout", logout, methods=["GET"]),
]
