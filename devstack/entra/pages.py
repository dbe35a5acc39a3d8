"""The emulator's HTML: the sign-in page, the second-factor step, the device-code page, the
form_post answer and the error page. Server-rendered, no script except form_post's auto-submit,
every value escaped.

Forms carry `flow`, the handle of the sign-in waiting for the user: unguessable and short-lived,
it is also what keeps another site from posting into the sign-in (CSRF).
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

from devstack.entra.errors import ProtocolError
from devstack.tenant import User

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=password]"
    "{width:100%;padding:.4rem;box-sizing:border-box}button{margin:.8rem .4rem 0 0;padding:.4rem"
    " 1rem}.error{color:#a4262c}.users button{margin:.2rem}small{color:#555}"
)
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}'
        f"</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status, headers=_NO_STORE)


def sign_in(
    action: str,
    flow: str,
    *,
    app_name: str,
    users: list[User],
    username: str = "",
    error: ProtocolError | None = None,
) -> HTMLResponse:
    """Pick a demo user (fills the name) or type one, then the password."""
    picks = "".join(
        f'<button type="button" name="pick" value="{escape(u.upn)}" '
        f"onclick=\"document.getElementById('username').value=this.value\">"
        f"{escape(u.display_name)}</button>"
        for u in users
    )
    body = (
        f"<p>to continue to <strong>{escape(app_name)}</strong> (Entra ID emulator)</p>"
        f"{_error(error)}"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="flow" value="{escape(flow)}">'
        f'<div class="users">Demo users: {picks}</div>'
        f'<label for="username">User name</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        'autocomplete="username">'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password">'
        "<small>The demo users' passwords are in .devstack/secrets.json.</small><br>"
        '<button type="submit" id="submit" name="action" value="sign_in">Sign in</button>'
        '<button type="submit" id="cancel" name="action" value="cancel">Cancel</button>'
        "</form>"
    )
    return _page("Sign in", body, 400 if error else 200)


def second_factor(action: str, flow: str, *, display_name: str, reason: str) -> HTMLResponse:
    body = (
        f"<p>{escape(display_name)}: {escape(reason)}</p>"
        "<p>Approve the sign-in request (the emulator's stand-in for the Authenticator app).</p>"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="flow" value="{escape(flow)}">'
        '<button type="submit" id="approve" name="action" value="approve">Approve</button>'
        '<button type="submit" id="deny" name="action" value="deny">Deny</button>'
        "</form>"
    )
    return _page("Verify your identity", body)


def device_code(action: str, *, error: ProtocolError | None = None) -> HTMLResponse:
    body = (
        "<p>Enter the code displayed on your app or device.</p>"
        f"{_error(error)}"
        f'<form method="post" action="{escape(action)}">'
        '<label for="otc">Code</label>'
        '<input type="text" id="otc" name="otc" autocomplete="off">'
        '<button type="submit" id="next">Next</button>'
        "</form>"
    )
    return _page("Enter code", body, 400 if error else 200)


def message(title: str, text: str) -> HTMLResponse:
    return _page(title, f"<p>{escape(text)}</p>")


def error(exc: ProtocolError) -> HTMLResponse:
    """An error the emulator cannot send back to the app (no trusted redirect URI)."""
    return _page("Sorry, but we're having trouble signing you in.", _error(exc), exc.status)


def form_post(target: str, fields: dict[str, str]) -> HTMLResponse:
    """response_mode=form_post: a form that posts the answer to the redirect URI by itself."""
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items()
    )
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Working...</title></head>'
        '<body onload="document.forms[0].submit()">'
        f'<form method="post" action="{escape(target)}">{inputs}'
        '<noscript><button type="submit">Continue</button></noscript></form></body></html>'
    )
    return HTMLResponse(html, headers=_NO_STORE)


def _error(exc: ProtocolError | None) -> str:
    if exc is None:
        return ""
    return f'<p class="error" id="error">AADSTS{exc.code}: {escape(exc.message)}</p>'
