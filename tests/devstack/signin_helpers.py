"""A scripted browser for the Entra emulator's sign-in pages: plain HTTP with a cookie jar,
reading the forms the way a person fills them in (no JavaScript is needed), and never following
the final redirect to the app (nothing listens there)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import requests

_FLOW = re.compile(r'name="flow" value="([^"]*)"')
_ACTION = re.compile(r'<form method="post" action="([^"]*)"')
_ERROR = re.compile(r'<p class="error" id="error">([^<]*)</p>')


class Browser:
    def __init__(self, entra_url: str, ca_bundle: Path) -> None:
        self.entra_url = entra_url
        self.http = requests.Session()
        self.http.verify = str(ca_bundle)

    def close(self) -> None:
        self.http.close()

    def open(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False, timeout=30)

    def submit(self, page: requests.Response, **fields: str) -> requests.Response:
        """Posts the page's form with its hidden `flow` plus `fields`."""
        action = _ACTION.search(page.text)
        assert action, page.text
        data = dict(fields)
        flow = _FLOW.search(page.text)
        if flow:
            data["flow"] = unescape(flow.group(1))
        url = urljoin(self.entra_url + "/", unescape(action.group(1)))
        return self.http.post(url, data=data, allow_redirects=False, timeout=30)

    def sign_in(self, page: requests.Response, username: str, password: str) -> requests.Response:
        return self.submit(page, username=username, password=password, action="sign_in")

    def approve(self, page: requests.Response) -> requests.Response:
        assert "Verify your identity" in page.text, page.text
        return self.submit(page, action="approve")


def page_error(page: requests.Response) -> str:
    found = _ERROR.search(page.text)
    return unescape(found.group(1)) if found else ""


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


def answer(response: requests.Response) -> dict[str, str]:
    """The authorize answer: a redirect's query or fragment, or a form_post page's fields."""
    if response.status_code == 200 and "document.forms[0].submit()" in response.text:
        return {unescape(k): unescape(v) for k, v in _HIDDEN.findall(response.text)}
    assert response.status_code == 302, (response.status_code, response.text)
    location = urlsplit(response.headers["location"])
    return dict(parse_qsl(location.fragment or location.query))


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(entra_url: str, tenant_id: str, **params: Any) -> str:
    query = {"response_type": "code", **params}
    return f"{entra_url}/{tenant_id}/oauth2/v2.0/authorize?{urlencode(query)}"
