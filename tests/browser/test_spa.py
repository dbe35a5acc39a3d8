"""The sample SPA end to end in headless Chromium: alice signs in (authorization code with PKCE,
through the Entra emulator's sign-in page), sees her customers page by page and searches them,
hits a 412 on a stale etag, signs out; dave's claims challenge is answered with a second sign-in
that passes the emulator's second-factor step, and the list follows.

Each step is checked against the API itself (`api.call`), not against what the page expects.
Harness, TLS trust and failure screenshots: tests/browser/conftest.py.
"""

from __future__ import annotations

from typing import Any

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.api.conftest import Api

WAIT = 30  # a generous guard on a busy 2-core machine, not a timing assertion


def wait_for(driver: WebDriver, condition: Any, message: str) -> Any:
    wait = WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(lambda d: condition(d), message)


def text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def status(driver: WebDriver) -> str:
    return text(driver, "status")


def names_on_page(driver: WebDriver) -> list[str]:
    """The first column, read in one go: the page replaces its rows as it pleases."""
    rows = "document.querySelectorAll('#customers tbody tr')"
    return list(driver.execute_script(f"return [...{rows}].map(r => r.cells[0].textContent)"))


def api_names(api: Api, user: str, **params: str) -> list[str]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    response = api.call("GET", f"/api/customers?{query}", user=user)
    assert response.status_code == 200, response.text
    return [item["fullName"] for item in response.json()["items"]]


def on_entra(driver: WebDriver, api: Api) -> bool:
    return str(driver.current_url).startswith(api.stack.entra_url)


def sign_in(driver: WebDriver, api: Api, user: str) -> None:
    """From the SPA's start page through the emulator's sign-in page and back."""
    driver.get(api.stack.spa_url + "/")
    button = wait_for(
        driver, lambda d: d.find_element(By.ID, "sign-in").is_displayed() and d, "no Sign in"
    )
    button.find_element(By.ID, "sign-in").click()
    enter_credentials(driver, api, user)


def enter_credentials(driver: WebDriver, api: Api, user: str) -> None:
    wait_for(driver, lambda d: on_entra(d, api) and d.find_elements(By.ID, "password"), "no page")
    username = driver.find_element(By.ID, "username")
    username.clear()
    username.send_keys(api.stack.tenant.user(user).upn)
    driver.find_element(By.ID, "password").send_keys(api.stack.material.password(user))
    driver.find_element(By.ID, "submit").click()


def signed_in_as(driver: WebDriver, api: Api, user: str) -> None:
    name = api.stack.tenant.user(user).display_name
    wait_for(driver, lambda d: text(d, "who") == name, f"not signed in as {user}")


def rows_shown(driver: WebDriver) -> list[str]:
    return list(wait_for(driver, lambda d: names_on_page(d) or None, "no rows"))


def test_alice_signs_in_lists_searches_pages_and_signs_out(browser: WebDriver, api: Api) -> None:
    driver = browser
    sign_in(driver, api, "alice")
    signed_in_as(driver, api, "alice")
    assert rows_shown(driver) == api_names(api, "alice", pageSize="10")

    Select(driver.find_element(By.ID, "page-size")).select_by_visible_text("5")
    driver.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    first = api_names(api, "alice", pageSize="5")
    wait_for(driver, lambda d: names_on_page(d) == first, "page 1 of 5 not shown")
    driver.find_element(By.ID, "next-page").click()
    wait_for(driver, lambda d: text(d, "page-number") == "Page 2", "no page 2")
    second = rows_shown(driver)
    assert second
    assert not set(second) & set(first)
    driver.find_element(By.ID, "first-page").click()
    wait_for(driver, lambda d: names_on_page(d) == first, "back to page 1 failed")

    word = first[0].split()[-1]
    driver.find_element(By.ID, "q").send_keys(word)
    driver.find_element(By.CSS_SELECTOR, "#search button[type=submit]").click()
    found = api_names(api, "alice", pageSize="5", q=word)
    assert found
    wait_for(driver, lambda d: names_on_page(d) == found, "search results not shown")

    driver.find_element(By.ID, "sign-out").click()
    wait_for(
        driver,
        lambda d: (
            str(d.current_url).startswith(api.stack.spa_url)
            and d.find_element(By.ID, "sign-in").is_displayed()
        ),
        "not signed out",
    )
    assert text(driver, "who") == ""


def test_a_stale_etag_shows_the_412_and_reload_recovers(browser: WebDriver, api: Api) -> None:
    driver = browser
    sign_in(driver, api, "alice")
    signed_in_as(driver, api, "alice")
    rows_shown(driver)
    driver.find_element(By.CSS_SELECTOR, "#customers tbody tr").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "editor").is_displayed(), "no editor")
    record_id = driver.find_element(By.CSS_SELECTOR, "#customers tbody tr").get_attribute("data-id")
    loaded = text(driver, "etag")

    # someone else saves the customer in the meantime
    other = api.call(
        "PATCH",
        f"/api/customers/{record_id}",
        user="alice",
        json_body={"jobTitle": "Changed elsewhere"},
    )
    assert other.status_code == 200, other.text
    assert other.json()["etag"] != loaded

    title = driver.find_element(By.CSS_SELECTOR, "#editor input[name=jobTitle]")
    title.clear()
    title.send_keys("Changed in the browser")
    driver.find_element(By.ID, "save").click()
    wait_for(driver, lambda d: "412 precondition_failed" in status(d), "no 412 shown")
    after = api.call("GET", f"/api/customers/{record_id}", user="alice")
    assert after.json()["jobTitle"] == "Changed elsewhere"  # nothing overwritten

    driver.find_element(By.ID, "reload").click()
    wait_for(driver, lambda d: text(d, "etag") == other.json()["etag"], "reload did not refresh")
    title = driver.find_element(By.CSS_SELECTOR, "#editor input[name=jobTitle]")
    title.clear()
    title.send_keys("Changed in the browser")
    driver.find_element(By.ID, "save").click()
    wait_for(driver, lambda d: status(d) == "Saved.", "not saved")
    after = api.call("GET", f"/api/customers/{record_id}", user="alice")
    assert after.json()["jobTitle"] == "Changed in the browser"


def test_daves_claims_challenge_is_answered_by_a_second_factor(
    browser: WebDriver, api: Api
) -> None:
    driver = browser
    challenged = api.call("GET", "/api/customers?pageSize=10", user="dave")
    assert challenged.status_code == 401  # without the step up, dave gets the challenge

    sign_in(driver, api, "dave")
    # The list's 401 insufficient_claims sends the page back to Entra with claims=; the
    # emulator asks for the second factor (after the password again, if it has no session).
    wait_for(
        driver,
        lambda d: (
            on_entra(d, api)
            and (d.find_elements(By.ID, "approve") or d.find_elements(By.ID, "password"))
        ),
        "no second sign-in",
    )
    if driver.find_elements(By.ID, "password"):
        enter_credentials(driver, api, "dave")
    wait_for(driver, lambda d: d.find_elements(By.ID, "approve"), "no second-factor step")
    driver.find_element(By.ID, "approve").click()

    signed_in_as(driver, api, "dave")
    names = rows_shown(driver)
    assert "claims_challenge" not in status(driver)
    assert len(names) == 10
