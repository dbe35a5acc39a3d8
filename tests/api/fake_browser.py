"""A stand-in for the user's web browser, for MSAL's `acquire_token_interactive` (which opens
the authorize URL with Python's `webbrowser`: point `BROWSER` at this script, `%s` for the URL).

It signs in on the emulator's page as `FAKE_BROWSER_USER` with `FAKE_BROWSER_PASSWORD`, then
delivers the answer (a form_post page) to the app's local listener, as a browser would. It
returns at once and works in a detached child: `webbrowser` waits for the browser command to
exit, and MSAL serves its listener only after that.
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = "--child"


def _sign_in(url: str) -> None:
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2]))
    from tests.devstack.signin_helpers import Browser, answer

    bundle = Path(os.environ["REQUESTS_CA_BUNDLE"])
    entra = url.split("/", 3)
    browser = Browser(f"{entra[0]}//{entra[2]}", bundle)
    try:
        page = browser.open(url)
        done = browser.sign_in(
            page, os.environ["FAKE_BROWSER_USER"], os.environ["FAKE_BROWSER_PASSWORD"]
        )
        if "Verify your identity" in done.text:
            done = browser.approve(done)
        target = done.text.split('action="', 1)[1].split('"', 1)[0]
        browser.http.post(target, data=answer(done), timeout=30)
    finally:
        browser.close()


if __name__ == "__main__":
    if sys.argv[1] == CHILD:
        _sign_in(sys.argv[2])
    else:
        subprocess.Popen([sys.executable, __file__, CHILD, sys.argv[1]], start_new_session=True)
