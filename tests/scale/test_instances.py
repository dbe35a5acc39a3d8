"""The `instances` fixture gives real, separate, cold API instances: one OS process and one
runtime each, so every instance makes its own On-Behalf-Of exchange without a shared store."""

from __future__ import annotations

import os

import requests

from devstack.instances import child_environment
from tests.api.conftest import Api
from tests.scale.conftest import StartInstances

OBO_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def obo_exchanges(api: Api, since: int) -> list[dict[str, object]]:
    return [
        e
        for e in api.entra_requests(since)
        if e["method"] == "POST"
        and str(e["path"]).endswith("/token")
        and e["grant_type"] == OBO_GRANT
    ]


def test_four_instances_are_four_processes_each_exchanging_for_itself(
    api: Api, instances: StartInstances
) -> None:
    token = api.user_token("alice")  # acquired before the mark: its own token POST is not counted
    mark, _ = api.marks()
    started = instances(4, REDIS_URL=None)  # without a shared store: today's behaviour

    pids = {i.pid for i in started}
    assert len(pids) == 4
    assert os.getpid() not in pids
    assert len({i.url for i in started}) == 4
    assert obo_exchanges(api, mark) == []  # started cold: nothing exchanged yet

    headers = {
        "Ocp-Apim-Subscription-Key": api.subscription_key,
        "Authorization": f"Bearer {token}",
    }
    with requests.Session() as http:
        http.trust_env = False
        for instance in started:
            response = http.get(
                f"{instance.url}/api/customers", params={"pageSize": 1}, headers=headers, timeout=60
            )
            assert response.status_code == 200, (instance.name, response.text)
            assert len(response.json()["items"]) == 1

    assert len(obo_exchanges(api, mark)) == 4


def test_settings_layer_over_the_environment_and_none_removes_one() -> None:
    env = child_environment(
        {"PATH": "/bin", "REDIS_URL": "redis://old"},
        {"REDIS_URL": "redis://stack", "AZURE_TENANT_ID": "t"},
        {"REDIS_URL": None, "EXTRA": "x"},
    )
    assert env == {"PATH": "/bin", "AZURE_TENANT_ID": "t", "EXTRA": "x"}
