"""Fixtures for the security tests (docs: ../shared/docs/security-catalog.md).

`api` and `faults` are the end-to-end fixtures of tests/api (the whole dev stack, with the API
host in front); `tokens` mints tokens signed with the demo tenant's own key, as Entra would;
`router` is a second in-process router over the same function app, for requests no socket can
carry reliably (tens of kilobytes of headers).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.host import FunctionsRouter
from devstack.stack import RunningStack
from tests.api.conftest import Api, api, faults
from tests.security.tokens import TokenBuilder

__all__ = ["api", "faults", "router", "tokens"]


@pytest.fixture(scope="session")
def tokens(api: Api) -> TokenBuilder:
    """The builder; and the API has its signing keys by now, so that the tests' "no key
    fetch" counts are not about the cold start."""
    builder = TokenBuilder(api.stack.entra_app.state.entra)
    warm = api.call("GET", "/api/vehicles?pageSize=1", token=builder.app_token())
    assert warm.status_code == 200, warm.text
    return builder


@pytest.fixture(scope="session")
def router(stack: RunningStack) -> Iterator[FunctionsRouter]:
    routed = FunctionsRouter.load("function_app", threads=4)
    yield routed
    routed.close()
