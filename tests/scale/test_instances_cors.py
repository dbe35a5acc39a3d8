"""Every API instance applies the stack's CORS policy, not only the in-process host: a host
process reads DEVSTACK_CORS from its environment, as each Azure instance gets platform CORS."""

from __future__ import annotations

import requests

from devstack.stack import RunningStack
from tests.scale.conftest import StartInstances


def test_a_host_process_answers_the_spas_preflight(
    stack: RunningStack, instances: StartInstances
) -> None:
    (instance,) = instances(1)
    for origin, allowed in ((stack.spa_url, True), ("https://evil.example", False)):
        response = requests.options(
            f"{instance.url}/api/customers",
            headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
            timeout=30,
        )
        assert response.status_code == 204
        assert response.headers.get("access-control-allow-origin") == (origin if allowed else None)
