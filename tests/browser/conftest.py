"""A real headless browser on the sample SPA (samples/spa) as the dev stack serves it.

Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver), driven
with Selenium. Without them, or without the SPA's npm packages (`make spa`), the tests skip
and say why; `.ci/run` installs both and sets REQUIRE_BROWSER_TESTS=1, which turns a skip into
a failure, so that CI cannot pass without having run them.

**TLS.** The page talks to the Entra emulator over HTTPS with the dev CA's certificate. Chromium
takes its trust anchors from an NSS database, which only `certutil` (libnss3-tools) can write,
and no command-line flag adds a CA. So the browser is told to accept the one public key of the
dev stack's TLS certificate (`--ignore-certificate-errors-spki-list`, the SHA-256 of its
SubjectPublicKeyInfo): every other certificate is verified as usual, which is much narrower
than `--ignore-certificate-errors`. Chromium honours the flag only with a `--user-data-dir`,
which chromedriver always gives it (a fresh temporary profile per session).

**On failure** each test leaves a screenshot, the page's HTML and the browser's console log
under `test-results/browser/` (git-ignored), named after the test.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from devstack.config import ROOT
from devstack.spa import MSAL_BUNDLE
from devstack.stack import RunningStack
from tests.api.conftest import api  # noqa: F401 - the API-driving fixture, for the checks

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
RESULTS = ROOT / "test-results" / "browser"


def _missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if _find(CHROMIUM) is None or _find(("chromedriver",)) is None:
        return (
            "chromium and chromedriver are not installed "
            "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    if not MSAL_BUNDLE.is_file():
        return "the sample SPA's npm packages are not installed: run `make spa` (npm ci)"
    return None


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def spki_sha256(cert_pem: Path) -> str:
    """Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium pins it."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


@pytest.fixture
def browser(stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[object]:
    reason = _missing()
    if reason:
        if os.environ.get("REQUIRE_BROWSER_TESTS") == "1":
            pytest.fail(f"browser tests required (REQUIRE_BROWSER_TESTS=1), but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(_find(CHROMIUM))
    for argument in (
        "--headless=new",
        "--no-sandbox",  # Chromium's sandbox refuses to run as root, as CI containers do
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-first-run",
        f"--ignore-certificate-errors-spki-list={spki_sha256(stack.material.tls_cert)}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(_find(("chromedriver",)))))
    driver.set_page_load_timeout(60)
    try:
        yield driver
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            _save_evidence(driver, request.node.name)
    finally:
        driver.quit()


def _save_evidence(driver: object, name: str) -> None:
    from selenium.webdriver.chromium.webdriver import ChromiumDriver

    assert isinstance(driver, ChromiumDriver)
    RESULTS.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    driver.save_screenshot(str(RESULTS / f"{safe}.png"))
    # the address without its query or fragment, where an authorization code may be
    where = driver.current_url.split("#")[0].split("?")[0]
    (RESULTS / f"{safe}.html").write_text(
        f"<!-- {where} -->\n{driver.page_source}", encoding="utf-8"
    )
    console = "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))  # type: ignore[no-untyped-call]
    (RESULTS / f"{safe}.console.txt").write_text(console + "\n", encoding="utf-8")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test item, so the fixture knows the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report
