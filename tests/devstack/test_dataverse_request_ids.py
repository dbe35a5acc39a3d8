"""Request ids: every answer carries Dataverse's `x-ms-service-request-id` (and `REQ_ID`), echoes
the client's `x-ms-client-request-id`, and the request log records the client's id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.tenant import Tenant
from tests.devstack.dataverse_helpers import Api, Tokens, logged


@pytest.fixture(scope="module")
def tokens(entra: Any, tenant: Tenant, dataverse: Any) -> Tokens:
    return Tokens(entra.app.state.entra, tenant, dataverse.url)


@pytest.fixture(scope="module")
def bob(dataverse: Any, ca_bundle: Path, tokens: Tokens) -> Iterator[Api]:
    api = Api(dataverse.url, ca_bundle, tokens.user("bob"))
    yield api
    api.close()


def test_the_client_id_is_echoed_and_logged(bob: Api, dataverse: Any) -> None:
    control = dataverse.app.state.dataverse.control
    client_id = str(uuid.uuid4())
    response = bob.get("WhoAmI", headers={"x-ms-client-request-id": client_id})
    assert response.status_code == 200
    assert response.headers["x-ms-client-request-id"] == client_id
    service_id = response.headers["x-ms-service-request-id"]
    assert uuid.UUID(service_id)
    assert response.headers["REQ_ID"] == service_id
    entries = logged(control, 0, lambda r: r["client_request_id"] == client_id)
    assert [r["path"] for r in entries] == ["/api/data/v9.2/WhoAmI"]


def test_every_answer_has_its_own_service_id(
    bob: Api, tokens: Tokens, dataverse: Any, ca_bundle: Path
) -> None:
    ids = {bob.get("WhoAmI").headers["x-ms-service-request-id"] for _ in range(3)}
    assert len(ids) == 3
    anonymous = Api(dataverse.url, ca_bundle, tokens.expired())
    try:
        refused = anonymous.get("WhoAmI", headers={"x-ms-client-request-id": "abc-123"})
    finally:
        anonymous.close()
    assert refused.status_code == 401
    assert uuid.UUID(refused.headers["x-ms-service-request-id"])
    assert refused.headers["x-ms-client-request-id"] == "abc-123"


def test_an_insane_client_id_is_not_echoed(bob: Api) -> None:
    response = bob.get("WhoAmI", headers={"x-ms-client-request-id": "a" * 500})
    assert response.status_code == 200
    assert "x-ms-client-request-id" not in response.headers
