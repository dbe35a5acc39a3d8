"""The README's copy-paste client for the dev stack runs verbatim (issue 16), and the MSAL quirk
it works around is still there.

The snippet is found by its marker in README.md or any docs/*.md, wherever the guides move,
and run as a script from the repository's root against the test session's stack, in a shell
whose REQUESTS_CA_BUNDLE knows nothing of the dev CA (as on machines that set it globally).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import msal
import pytest
import requests

from devstack.config import ROOT
from devstack.stack import RunningStack

MARKER = "<!-- snippet: dev-stack-client"
_BLOCK = re.compile(r"```python\n(.*?)\n```", re.DOTALL)


def snippet(marker: str = MARKER) -> str:
    """The first python block after `marker`, in the one document that has it."""
    found = [
        text[text.index(marker) :]
        for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
        if marker in (text := path.read_text(encoding="utf-8"))
    ]
    assert len(found) == 1, f"{marker!r} is in {len(found)} documents"
    block = _BLOCK.search(found[0])
    assert block, f"no python block after {marker!r}"
    return block.group(1) + "\n"


def test_the_dev_stack_client_runs_verbatim(stack: RunningStack, tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(snippet(), encoding="utf-8")
    env = {
        **os.environ,
        "DEVSTACK_DIR": stack.settings["DEVSTACK_DIR"],
        "REQUESTS_CA_BUNDLE": certifi.where(),
        "CURL_CA_BUNDLE": certifi.where(),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["200 2 customers", "200 2 customers"]


class _Recorder(requests.Session):
    """MSAL's `http_client`: records every URL, and does not send to a URL without a port
    (port 443 may be anybody's on a shared machine)."""

    def __init__(self, verify: str) -> None:
        super().__init__()
        self.verify, self.trust_env = verify, False
        self.urls: list[str] = []

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        self.urls.append(str(url))
        if urlsplit(str(url)).port is None:
            raise requests.ConnectionError(f"{url}: not sent")
        return super().request(method, url, *args, **kwargs)


def test_msal_still_drops_the_port_from_the_user_realm_url(stack: RunningStack) -> None:
    """Why the snippet's password grant needs `KeepPort`: stock MSAL keeps the authority's port
    for discovery and tokens, but asks the user realm at the host name alone. When this fails,
    MSAL has fixed it, and the shim (here and in `devstack.entra.compat`) can go."""
    recorder = _Recorder(stack.settings["REQUESTS_CA_BUNDLE"])
    app = msal.PublicClientApplication(
        stack.tenant.app("portal").client_id,
        authority=f"{stack.entra_url}/{stack.tenant.id}",
        instance_discovery=False,
        http_client=recorder,
    )
    user = stack.tenant.user("alice").upn
    scope = f"api://{stack.tenant.app('central-api').client_id}/.default"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(requests.ConnectionError):
            app.acquire_token_by_username_password(user, "unused", scopes=[scope])
    port = urlsplit(stack.entra_url).port
    discovery, realm = recorder.urls
    assert urlsplit(discovery).port == port
    assert realm.startswith(f"https://localhost/common/userrealm/{user}")
