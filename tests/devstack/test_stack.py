"""The stack as a newcomer meets it: stack.env, the banner's commands, the client CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import certifi
import jwt
import pytest

from devstack.__main__ import banner
from devstack.config import ROOT, read_env
from devstack.stack import RunningStack
from tests.declared import app_roles, consented

VENV_PYTHON = ".venv/bin/python"


def _python() -> str:
    """The banner says .venv/bin/python; fall back to this interpreter outside `make test`."""
    return VENV_PYTHON if (ROOT / VENV_PYTHON).exists() else sys.executable


def _shell_env(stack: RunningStack) -> dict[str, str]:
    """A newcomer's shell: the stack's folder, and a REQUESTS_CA_BUNDLE that knows nothing of
    the dev CA (as on machines that set it globally), which the CLI must not depend on."""
    return {
        **os.environ,
        "DEVSTACK_DIR": stack.settings["DEVSTACK_DIR"],
        "REQUESTS_CA_BUNDLE": certifi.where(),
    }


def _run(
    command: list[str], env: dict[str, str], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`command` at the repository's root, its output captured."""
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _cli(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([_python(), "-m", "devstack", *args], _shell_env(stack))


def _claims(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_stack_env_holds_every_setting(stack: RunningStack) -> None:
    written = read_env(Path(stack.settings["DEVSTACK_DIR"]) / "stack.env")
    assert written == stack.settings
    assert written["AZURE_AUTHORITY_HOST"] == stack.entra_url
    assert written["DATAVERSE_URL"] == stack.dataverse_url
    assert written["DEVSTACK_API_URL"] == stack.api_url
    assert written["API_CLIENT_ID"] == stack.tenant.app("central-api").client_id
    keys = json.loads(written["SUBSCRIPTION_KEYS"])
    assert all(len(pair) == 2 for pair in keys.values()), "two keys per subscription"
    assert Path(written["REQUESTS_CA_BUNDLE"]).read_text().count("BEGIN CERTIFICATE") > 1


def test_example_settings_document_every_api_setting(stack: RunningStack) -> None:
    text = (ROOT / "local.settings.json.example").read_text()
    without_comments = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)
    values = json.loads(without_comments)["Values"]
    api_settings = {k for k in stack.settings if not k.startswith("DEVSTACK_")}
    assert api_settings <= set(values)
    for name in values:
        assert re.search(rf"//.*\n\s*\"{name}\"", text), f"{name} has no comment"


def test_banner_commands_work_verbatim(stack: RunningStack) -> None:
    text = banner(stack.settings).replace("\\\n", "")  # join continued lines
    lines = [line.strip() for line in text.splitlines()]
    commands = [
        line
        for line in lines
        if line.startswith(
            ("KEY=", "TOKEN=", "APP_TOKEN=", "curl ", f"{VENV_PYTHON} -m devstack call")
        )
    ]
    assert len(commands) >= 5
    script = "set -euo pipefail\n" + "\n".join(commands).replace(VENV_PYTHON, _python())
    result = _run(["bash", "-c", script], _shell_env(stack), timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"items"') == 3  # curl and both CLI calls listed records


def test_token_prints_a_user_token_and_nothing_else(stack: RunningStack) -> None:
    result = _cli(stack, "token", "--user", "alice")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    claims = _claims(token)
    assert claims["aud"] == stack.tenant.app("central-api").client_id
    assert claims["oid"] == stack.tenant.user("alice").oid
    assert set(str(claims["scp"]).split()) == set(consented(stack.tenant, "portal"))


def test_token_for_another_client_and_scope(stack: RunningStack) -> None:
    result = _cli(
        stack, "token", "--user", "bob", "--client", "reporting", "--scope", "customer.read"
    )
    assert result.returncode == 0, result.stderr
    claims = _claims(result.stdout.strip())
    assert claims["scp"] == "customer.read"
    assert claims["azp"] == stack.tenant.app("reporting").client_id


def test_token_prints_an_app_token(stack: RunningStack) -> None:
    result = _cli(stack, "token", "--app", "dealer-sync")
    assert result.returncode == 0, result.stderr
    claims = _claims(result.stdout.strip())
    assert sorted(claims["roles"]) == sorted(app_roles(stack.tenant, "dealer-sync"))  # type: ignore[call-overload]
    assert claims["idtyp"] == "app"
    assert "scp" not in claims


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("token", "--user", "mallory"), "no user named 'mallory'"),
        (("token", "--app", "nope"), "no app named 'nope'"),
        (("token", "--user", "alice", "--client", "portal", "--scope", "vehicle.read"), "consent"),
    ],
)
def test_cli_errors_are_one_line(stack: RunningStack, args: tuple[str, ...], message: str) -> None:
    result = _cli(stack, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_call_adds_token_and_key(stack: RunningStack) -> None:
    result = _cli(stack, "call", "--user", "alice", "GET", "/api/customers?pageSize=2")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["items"]) == 2
    assert "HTTP 200" in result.stderr


def test_cli_without_a_running_stack_says_so(tmp_path: Path) -> None:
    result = _run(
        [_python(), "-m", "devstack", "token", "--user", "alice"],
        {**os.environ, "DEVSTACK_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "make run" in result.stderr
    assert "Traceback" not in result.stderr


def test_call_takes_headers_as_curl_writes_them(stack: RunningStack) -> None:
    result = _cli(
        stack, "call", "--user", "alice", "-H", "x-correlation-id: cli-header-test-1",
        "GET", "/api/customers?pageSize=1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "x-correlation-id: cli-header-test-1" in result.stderr
