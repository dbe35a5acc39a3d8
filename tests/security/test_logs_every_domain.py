"""L4 for every declared domain: no value of any field a client writes reaches a log record.

The values are canaries placed in every writable text field of each domain's declaration (the
patterned ones too, in a form the pattern takes), created, read back and sent once more in a
body the API refuses; the caller is one the demo tenant lets create such records. A domain added
to function_app.py is covered without a line here (see tests/declared.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from devstack.tenant import Tenant
from shared.domains.model import Choice, Domain, Integer, Reference, Text
from shared.http.errors import BadInput
from tests.api.conftest import Api
from tests.declared import Caller, domains, writer
from tests.security.downstream import assert_error
from tests.security.test_logs import (  # noqa: F401  (fixtures)
    assert_nothing_leaked,
    canary,
    debug_logs,
    signed_in,
)

pytestmark = pytest.mark.usefixtures("debug_logs")


def _text_value(kind: Text, name: str) -> str | None:
    """A canary the field accepts, or None when none of the shapes fits its pattern."""
    mark = canary(name[:4].lower())
    shapes = [mark, f"{mark}@example.org", uuid.uuid4().hex.upper() * 2]
    for shape in shapes:
        value = shape[: kind.max_length]
        try:
            if kind.parse(value, name) == value:
                return value
        except BadInput:
            continue
    return None


def _caller_kwargs(caller: Caller) -> dict[str, str]:
    return {"user": caller.user} if caller.user else {"app": str(caller.app)}


def _existing_id(api: Api, caller: Caller, entity_set: str) -> str:
    """A record of the referenced table that the caller may see, through the API."""
    (target,) = [d for d in domains() if d.entity_set == entity_set]
    page = api.call("GET", f"/api/{target.route}?pageSize=1", **_caller_kwargs(caller))
    assert page.status_code == 200, page.text
    return str(page.json()["items"][0]["id"])


def _body(api: Api, domain: Domain, caller: Caller) -> tuple[dict[str, Any], dict[str, str]]:
    """A create body from the declaration, and the canaries in it (field name: value)."""
    body: dict[str, Any] = {}
    canaries: dict[str, str] = {}
    for field in (f for f in domain.fields if f.writable):
        kind = field.kind
        if isinstance(kind, Text):
            value = _text_value(kind, field.name)
            if value is not None:
                body[field.name] = canaries[field.name] = value
        elif isinstance(kind, Choice) and field.required:
            body[field.name] = next(iter(kind.options))
        elif isinstance(kind, Integer) and field.required:
            body[field.name] = kind.minimum
        elif isinstance(kind, Reference) and field.required:
            body[field.name] = _existing_id(api, caller, kind.entity_set)
    return body, canaries


def _plan() -> list[Any]:
    return [pytest.param(d, id=d.route) for d in domains()]


@pytest.mark.parametrize("domain", _plan())
def test_field_values_of_every_domain_are_never_logged(
    api: Api, caplog: pytest.LogCaptureFixture, domain: Domain
) -> None:
    tenant: Tenant = api.stack.tenant
    caller = writer(tenant, domain)
    who = _caller_kwargs(caller)
    body, canaries = _body(api, domain, caller)
    assert canaries, f"{domain.route}: no text field took a canary"
    secrets = {f"{domain.name}.{name}": value for name, value in canaries.items()}
    caplog.clear()

    created = api.call("POST", f"/api/{domain.route}", json_body=body, **who)
    assert created.status_code == 201, created.text
    record = created.json()
    assert {name: record[name] for name in canaries} == canaries  # stored as sent
    read = api.call("GET", f"/api/{domain.route}/{record['id']}", **who)
    assert read.status_code == 200, read.text

    longest = max((f for f in domain.fields if f.writable and isinstance(f.kind, Text)),
                  key=lambda f: f.kind.max_length)  # type: ignore[attr-defined]  # fmt: skip
    too_long = canary("long") * 200
    refused = api.call(
        "POST", f"/api/{domain.route}", json_body={**body, longest.name: too_long}, **who
    )
    assert_error(refused, 400)
    assert_nothing_leaked(api, caplog, {**secrets, "too long": too_long})
    assert_nothing_leaked(api, caplog, {"too long": too_long}, refused)
