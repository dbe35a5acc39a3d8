"""Property: search text is always searched literally.

For any name the API accepts (printable text with quotes, LIKE wildcards `%` `_` `[` `]`, URL
specials `&` `#` `+`, spaces, non-ASCII; no control, bidirectional or zero-width characters), a
customer with that name is found by searching for it, and every customer found holds the text
in a searched field (`fullName`, `email`, `phone`), compared case-insensitively. When the name
contains wildcards, a decoy whose name the wildcards would match (but which does not contain the
name) is created as well: an unescaped search would find it, so the second half of the property
catches it.

Alice (portal, `customer.readwrite`) creates the customers and searches; she sees the contacts
she owns, her own new ones among them. Names are stored trimmed (Dataverse trims the parts of
`fullName`), so the generated text is trimmed first.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domains.model import check_text
from shared.http.errors import BadInput
from tests.api.conftest import Api


def _accepted(name: str) -> bool:
    try:
        check_text(name, "lastName", max_length=100)
    except BadInput:
        return False
    return True


SPECIAL = "'\"%_[]^&#+=?/\\ .,;:*-~!@$()"
NAMES = (
    st.text(
        alphabet=st.one_of(
            st.sampled_from(SPECIAL),
            st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
        ),
        min_size=1,
        max_size=50,
    )
    .map(str.strip)
    .filter(bool)
    .filter(_accepted)
)
_BRACKETS = re.compile(r"\[([^\]^])[^\]]*\]")


def _contains(haystack: Any, needle: str) -> bool:
    if not isinstance(haystack, str):
        return False
    if needle.casefold() in haystack.casefold():
        return True
    return re.search(re.escape(needle), haystack, re.IGNORECASE) is not None


def _decoy(name: str) -> str | None:
    """A name that `name`, read as a LIKE pattern, would match, but that does not contain it."""
    decoy = _BRACKETS.sub(r"\1", name).replace("%", "x").replace("_", "y")
    if decoy == name or _contains(decoy, name):
        return None
    return decoy


def _create(api: Api, last_name: str) -> dict[str, Any]:
    marker = "Pbt" + uuid.uuid4().hex[:12]
    response = api.call(
        "POST",
        "/api/customers",
        user="alice",
        json_body={"firstName": marker, "lastName": last_name},
    )
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()
    return record


def _search(api: Api, text: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, str] = {"q": text, "pageSize": "200"}
    while True:
        response = api.http.get(
            f"{api.url}/api/customers",
            params=params,
            headers={
                "Ocp-Apim-Subscription-Key": api.subscription_key,
                "Authorization": f"Bearer {api.user_token('alice')}",
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["items"])
        if not page["nextPageToken"]:
            return found
        params["pageToken"] = page["nextPageToken"]


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(name=NAMES)
def test_a_name_is_found_literally_and_nothing_else_is(api: Api, name: str) -> None:
    created = _create(api, name)
    decoy_name = _decoy(name)
    decoy = _create(api, decoy_name) if decoy_name else None
    found = _search(api, name)
    ids = {record["id"] for record in found}
    assert created["id"] in ids
    if decoy is not None:
        assert decoy["id"] not in ids
    for record in found:
        assert any(_contains(record[f], name) for f in ("fullName", "email", "phone")), record


def test_the_decoys_would_match_an_unescaped_search() -> None:
    assert _decoy("50%_off") == "50xyoff"
    assert _decoy("[ab]c") == "ac"
    assert _decoy("plain name") is None
