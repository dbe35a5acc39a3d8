"""samples/cli/customers.py, run as a developer runs it, on its device-code path: the script
prints Entra's message, a person types the code at /devicelogin and signs in (here over plain
HTTP), and the script lists customers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.devstack.signin_helpers import Browser

SCRIPT = Path(__file__).parents[2] / "samples" / "cli" / "customers.py"


@pytest.fixture
def fast_device_polls(api: Api) -> Iterator[None]:
    """Entra's 5 s polling interval, at 1 s for the test."""
    codes = api.stack.entra_app.state.entra.device_codes
    saved, codes.interval = codes.interval, 1
    yield
    codes.interval = saved


def test_cli_sample_signs_in_with_the_device_code_flow(api: Api, fast_device_polls: None) -> None:
    command = [
        sys.executable,
        str(SCRIPT),
        "--device-code",
        "--page-size",
        "3",
        "--stack-env",
        str(api.stack.material.folder / "stack.env"),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as script:
        assert script.stderr is not None
        message = script.stderr.readline()
        found = re.search(r"open the page (\S+) and enter the code (\w+)", message)
        assert found, message
        browser = Browser(api.stack.entra_url, api.stack.ca_bundle)
        try:
            page = browser.submit(browser.open(found.group(1)), otc=found.group(2))
            alice = api.stack.tenant.user("alice")
            done = browser.sign_in(page, alice.upn, api.stack.material.password("alice"))
            assert "You have signed in to portal" in done.text
        finally:
            browser.close()
        out, err = script.communicate(timeout=120)
    assert script.returncode == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    assert all(row["id"] and row["fullName"] for row in rows)


@pytest.mark.parametrize("user", ["alice", "dave"])
def test_cli_sample_signs_in_in_the_browser(api: Api, user: str) -> None:
    """The interactive path: MSAL's acquire_token_interactive opens "the browser" (a script
    that fills in the sign-in page, and approves the second factor when asked) and receives the
    answer on its localhost listener. Dave's first call gets the claims challenge; the sample
    signs him in again with the claims, and its retry succeeds."""
    env = {
        **os.environ,
        "BROWSER": f"{sys.executable} {Path(__file__).with_name('fake_browser.py')} %s",
        "FAKE_BROWSER_USER": api.stack.tenant.user(user).upn,
        "FAKE_BROWSER_PASSWORD": api.stack.material.password(user),
        "REQUESTS_CA_BUNDLE": str(api.stack.ca_bundle),
    }
    command = [
        sys.executable,
        str(SCRIPT),
        "--page-size",
        "2",
        "--stack-env",
        str(api.stack.material.folder / "stack.env"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
    challenged = "The API asks for more" in done.stderr
    assert challenged == (user == "dave")
