"""Fixtures for scale-out tests: real API instances, each its own OS process, against the
session's emulators (and store, when the stack has one).

`instances(k, **settings)` starts k API host processes on free ports (devstack/instances.py),
cold (nothing cached; each fetches keys and discovery as it starts, shared/warmup.py), with the
stack's settings in their environment and `settings` over them (`NAME=None` removes one, e.g.
`REDIS_URL=None` for instances without the store). It returns once each answers; every process
it started is stopped and reaped when the test ends, pass or fail. `api` is tests/api's fixture:
tokens, the emulators' request logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.instances import HostGroup, Instance, child_environment, listen
from devstack.stack import RunningStack
from tests.api import conftest as api_fixtures

api = api_fixtures.api

StartInstances = Callable[..., list[Instance]]


@pytest.fixture
def instances(stack: RunningStack, tmp_path: Path) -> Iterator[StartInstances]:
    groups: list[HostGroup] = []

    def start(k: int, **settings: str | None) -> list[Instance]:
        # os.environ for PATH and the like; the stack's settings (REDIS_URL among them when the
        # stack runs with a store) so that each instance reads what the in-process host reads.
        env = child_environment(os.environ, stack.settings, settings)
        first = len(groups) * 100  # names stay unique across calls within one test
        sockets = [(f"api-host-{first + n + 1}", listen("api-host", 0)) for n in range(k)]
        group = HostGroup.start(sockets, env=env, log_dir=tmp_path)
        groups.append(group)
        return group.instances

    yield start
    for group in groups:
        group.stop()
