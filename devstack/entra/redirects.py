"""Redirect URIs: which registered URI (and so which platform) a request's `redirect_uri` is.

Entra matches exactly (paths are case-sensitive), with two allowances it documents: the port of
a loopback URI (`localhost`, `127.0.0.1`) is ignored, so that native apps can listen on any
port (RFC 8252 §7.3), and a URI without a path is the same as one whose path is `/`; the answer
goes to `/` then.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

from devstack.entra.errors import InvalidRequest
from devstack.tenant import App, RedirectUri

LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


def registered(app: App, redirect_uri: str) -> RedirectUri:
    """The app's registered URI that `redirect_uri` matches; AADSTS50011 when none does."""
    wanted = _key(redirect_uri)
    if wanted is not None:
        for candidate in app.redirect_uris:
            if _key(candidate.uri) == wanted:
                return candidate
    raise InvalidRequest(
        50011,
        f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
        f"URIs configured for the application '{app.client_id}'. Make sure the redirect URI sent "
        "in the request matches one added to your application in the Azure portal. Navigate to "
        "https://aka.ms/redirectUriMismatchError to learn more about how to fix this.",
    )


def response_uri(redirect_uri: str) -> str:
    """Where the answer goes: the URI as sent, with `/` as its path when it had none."""
    parts = urlsplit(redirect_uri)
    return urlunsplit(parts._replace(path=parts.path or "/"))


def origin(redirect_uri: str) -> str:
    parts = urlsplit(redirect_uri)
    return f"{parts.scheme}://{parts.netloc}"


def _key(uri: str) -> tuple[str, str, str, str] | None:
    try:
        parts: SplitResult = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.fragment:
        return None
    host = parts.hostname.lower()
    netloc = host if host in LOOPBACK_HOSTS else f"{host}:{port}" if port else host
    return parts.scheme.lower(), netloc, parts.path or "/", parts.query
