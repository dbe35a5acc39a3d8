"""Schema fuzzing: schemathesis generates requests from `/api/openapi.json` as the host serves
it and sends them with valid credentials: as an application (dealer-sync), and as users (Alice
and Bob through portal). Every response must be a documented status with the documented body,
content type and headers, and none may be a 5xx. Negative cases (input the document forbids)
must be refused with a 4xx.

Per operation (stateless) and per domain (stateful, following the document's links from a
created record to reading and updating it). Deterministic: derandomized Hypothesis, a fixed
schemathesis seed, no example database. Small: a dozen examples per operation and mode, ten
short workflows per domain. Writes are real; the stack lives for one test session.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.tenant import load_tenant
from shared import openapi
from tests.api.conftest import Api
from tests.declared import creatable_blind, domains, writer

CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
IDENTITIES = ("app:dealer-sync", "user:alice", "user:bob")
SEED = 20260101


def _plan() -> list[Any]:
    """(identity, method, path, mode) for every operation: the protected ones as each identity
    in both modes, the anonymous ones once, without credentials (they take no input)."""
    plan = []
    for path, item in openapi.document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            label = f"{method.upper()} {path}"
            if not operation["security"]:
                mode = GenerationMode.POSITIVE
                plan.append(pytest.param(None, method.upper(), path, mode, id=label))
                continue
            for identity in IDENTITIES:
                for mode in EXAMPLES:
                    test_id = f"{identity.split(':')[1]}-{label}-{mode.value}"
                    plan.append(pytest.param(identity, method.upper(), path, mode, id=test_id))
    return plan


@pytest.fixture(scope="module")
def schema(api: Api) -> Any:
    loaded = schemathesis.openapi.from_url(
        f"{api.url}/api/openapi.json",
        config=schemathesis.Config(seed=SEED),
        verify=str(api.stack.ca_bundle),
    )
    # Credentials are ours to send, valid ones; the auth tests cover missing and bad ones.
    loaded.config.generation.update(with_security_parameters=False, deterministic=True)
    return loaded


@pytest.fixture(scope="module")
def session(api: Api) -> Any:
    with requests.Session() as http:
        http.verify = str(api.stack.ca_bundle)
        http.trust_env = False
        yield http


def _credentials(api: Api, identity: str | None) -> dict[str, str]:
    if identity is None:
        return {}
    kind, name = identity.split(":")
    token = api.app_token(name) if kind == "app" else api.user_token(name)
    return {"Ocp-Apim-Subscription-Key": api.subscription_key, "Authorization": f"Bearer {token}"}


def _settings(max_examples: int, **more: Any) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        **more,
    )


@pytest.mark.parametrize(("identity", "method", "path", "mode"), _plan())
def test_responses_conform(
    api: Api,
    schema: Any,
    session: requests.Session,
    identity: str | None,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    headers = _credentials(api, identity)
    base_url = f"{api.url}/api"
    checks = [*CONFORMANCE, *([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])]

    @_settings(EXAMPLES[mode], phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    def fuzz(case: Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=checks, headers=headers)

    fuzz()


def _workflows() -> list[Any]:
    """One workflow per declared domain, as a caller the demo tenant lets create its records;
    the links must be followed when a create needs no existing record (a fuzzer cannot know a
    customer's id for a case)."""
    tenant = load_tenant()
    plan = []
    for domain in domains():
        caller = writer(tenant, domain)
        name = caller.user or caller.app
        plan.append(
            pytest.param(
                caller.label, domain.title, creatable_blind(domain), id=f"{name}-{domain.route}"
            )
        )
    return plan


WORKFLOWS = _workflows()


@pytest.mark.slow
@pytest.mark.parametrize(("identity", "tag", "creates"), WORKFLOWS)
def test_workflows_conform(
    api: Api, schema: Any, session: requests.Session, identity: str, tag: str, creates: bool
) -> None:
    """Stateful: records are created, then read and updated through the document's links
    (with the etag the create answered, so a later update may rightly get 412)."""
    headers = _credentials(api, identity)
    base_url = f"{api.url}/api"
    answered: set[tuple[str, int]] = set()

    class Workflow(schema.include(tag=tag).as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": base_url, "session": session, "headers": headers, "timeout": 30}

        def validate_response(self, response: Any, case: Case, *_: Any, **__: Any) -> None:
            answered.add((case.method, response.status_code))
            case.validate_response(response, checks=CONFORMANCE, headers=headers)

    Workflow.run(settings=_settings(10, stateful_step_count=6))
    if creates:  # the links were followed: a record created here was read and updated
        assert {("POST", 201), ("GET", 200), ("PATCH", 200)} <= answered
