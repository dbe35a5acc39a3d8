"""Fixtures for the security tests (docs: ../shared/docs/security-catalog.md).

`api` and `faults` are the end-to-end fixtures of tests/api (the whole dev stack, with the API
host in front); `tokens` mints tokens signed with the demo tenant's own key, as Entra would;
`router` is a second in-process router over the same function app, for requests no socket can
carry reliably (tens of kilobytes of headers).

In process, for what needs a clock the test moves (the key refresh and the keys' maximum age):
`emulator` is the standalone Entra emulator, `keys` our own `SigningKeys` against it on `clock`,
and `builder` mints tokens signed with the emulator's active key. Each test module builds its
own `TokenValidator` over them, with or without the memory of validated tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.host import FunctionsRouter
from devstack.stack import RunningStack
from shared import runtime
from shared.auth import SigningKeys
from tests.api.conftest import Api, api, faults
from tests.clock import ManualClock
from tests.conftest import Emulator
from tests.security.tokens import TokenBuilder

__all__ = ["api", "builder", "clock", "emulator", "faults", "keys", "router", "tokens"]


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
    runtime.runtime().dataverse.close()  # its async client for this router's loop, first
    routed.close()


# --- in process ----------------------------------------------------------------------------------


@pytest.fixture
def emulator(entra: Emulator, ca_bundle: Path) -> Iterator[Emulator]:
    """The standalone Entra emulator, reset before and after (keys, faults, log)."""
    handle = entra.app.state.entra
    handle.control.reset()
    yield entra
    handle.control.reset()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(10_000.0)


@pytest.fixture
def keys(emulator: Emulator, ca_bundle: Path, clock: ManualClock) -> Iterator[SigningKeys]:
    """With the defaults the API runs with: refreshed at most once per 5 minutes, trusted for a
    day after the last fetch and an hour more while Entra cannot be reached."""
    with requests.Session() as session:
        session.verify = str(ca_bundle)
        tid = emulator.app.state.entra.tenant.id
        yield SigningKeys(f"{emulator.url}/{tid}", session=session, clock=clock)


@pytest.fixture
def builder(emulator: Emulator) -> TokenBuilder:
    return TokenBuilder(emulator.app.state.entra)
