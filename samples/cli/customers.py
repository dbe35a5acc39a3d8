"""A command-line client of the central API: it signs a user in with MSAL, interactively in the
browser or with the device code flow, lists customers, and handles a claims challenge.

It is written as a client team would write it against Microsoft Entra ID; nothing in it is
special to the dev stack except where its settings come from (`--stack-env`, which reads the
stack's `.devstack/stack.env`). Run it with the dev stack up (`make run`):

    .venv/bin/python samples/cli/customers.py                 # browser sign-in
    .venv/bin/python samples/cli/customers.py --device-code   # sign in on another device
    .venv/bin/python samples/cli/customers.py --search hansen --page-size 5

Against Entra ID, give the settings instead: --authority https://login.microsoftonline.com/<tid>
--client-id <your app> --api-url https://<api host> --api-client-id <API's client id>
--subscription-key <key> (or the environment variables named in `--help`).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import msal
import requests

# The demo tenant's desktop client registration ("portal" in devstack/tenant.toml): a public
# client with the redirect URI http://localhost and public client flows allowed.
DEMO_CLIENT_ID = "c9336fe4-744f-47c5-bf53-9b459f5eb5b1"
DEFAULT_STACK_ENV = Path(".devstack/stack.env")


class SignInFailed(Exception):
    """Entra refused to issue a token; the message is its error code and description."""


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _settings(args: argparse.Namespace) -> dict[str, str]:
    """Command line over environment over the dev stack's stack.env."""
    stack: dict[str, str] = {}
    if args.stack_env.exists():
        env = _read_env(args.stack_env)
        stack = {
            "authority": f"{env['AZURE_AUTHORITY_HOST']}/{env['AZURE_TENANT_ID']}",
            "api_url": env["DEVSTACK_API_URL"],
            "api_client_id": env["API_CLIENT_ID"],
            "subscription_key": env["DEVSTACK_SUBSCRIPTION_KEY"],
            "ca_bundle": env.get("REQUESTS_CA_BUNDLE", ""),
        }
    names = {
        "authority": "CENTRAL_API_AUTHORITY",
        "client_id": "CENTRAL_API_CLIENT_APP_ID",
        "api_url": "CENTRAL_API_URL",
        "api_client_id": "CENTRAL_API_CLIENT_ID",
        "subscription_key": "CENTRAL_API_SUBSCRIPTION_KEY",
        "ca_bundle": "REQUESTS_CA_BUNDLE",
    }
    settings = {"client_id": DEMO_CLIENT_ID, **stack}
    for key, variable in names.items():
        chosen = getattr(args, key) or os.environ.get(variable)
        if chosen:
            settings[key] = chosen
    missing = [f"--{k.replace('_', '-')}" for k in names if k != "ca_bundle" and k not in settings]
    if missing:
        raise SystemExit(f"missing settings: {', '.join(missing)} (or start the dev stack)")
    return settings


class Client:
    def __init__(
        self,
        settings: dict[str, str],
        *,
        device_code: bool,
        show: Callable[[str], None],
        http: requests.Session | None = None,
    ) -> None:
        self._settings = settings
        self._device_code = device_code
        self._show = show
        self._http = http or requests.Session()
        if settings.get("ca_bundle"):
            self._http.verify = settings["ca_bundle"]
        host = urlsplit(settings["authority"]).hostname or ""
        self._app = msal.PublicClientApplication(
            settings["client_id"],
            authority=settings["authority"],
            # Instance discovery asks login.microsoftonline.com about the authority's host:
            # needed for Entra's own hosts, impossible for any other (the dev stack's emulator).
            instance_discovery=host.endswith(".microsoftonline.com"),
            http_client=self._http,
        )
        self.scopes = [f"api://{settings['api_client_id']}/customer.read"]

    def token(self, claims: str | None = None) -> str:
        """From MSAL's cache when it can; else the user signs in (again, with `claims`)."""
        result: dict[str, Any] | None = None
        accounts = self._app.get_accounts()
        if accounts and claims is None:
            result = self._app.acquire_token_silent(self.scopes, account=accounts[0])
        if not result:
            result = self._sign_in(claims)
        if "access_token" not in result:
            raise SignInFailed(f"{result.get('error')}: {result.get('error_description')}")
        return str(result["access_token"])

    def _sign_in(self, claims: str | None) -> dict[str, Any]:
        if self._device_code:
            flow = self._app.initiate_device_flow(self.scopes, claims_challenge=claims)
            if "user_code" not in flow:
                return dict(flow)
            self._show(flow["message"])
            return dict(self._app.acquire_token_by_device_flow(flow))
        return dict(
            self._app.acquire_token_interactive(
                self.scopes, claims_challenge=claims, prompt="select_account"
            )
        )

    def customers(self, search: str | None, page_size: int) -> dict[str, Any]:
        """One page of customers; a claims challenge is answered once, by signing in again."""
        params: dict[str, str | int] = {"pageSize": page_size}
        if search:
            params["q"] = search
        response = self._get("/api/customers", params, self.token())
        claims = _claims_challenge(response)
        if claims is not None:
            self._show("The API asks for more (multi-factor authentication): sign in again.")
            response = self._get("/api/customers", params, self.token(claims))
        if response.status_code != 200:
            raise SignInFailed(f"the API answered {response.status_code}: {response.text}")
        page: dict[str, Any] = response.json()
        return page

    def _get(self, path: str, params: dict[str, str | int], token: str) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "Ocp-Apim-Subscription-Key": self._settings["subscription_key"],
        }
        url = self._settings["api_url"].rstrip("/") + path
        return self._http.get(url, params=params, headers=headers, timeout=30)


def _claims_challenge(response: requests.Response) -> str | None:
    """The claims JSON of a 401 insufficient_claims challenge, or None."""
    header = response.headers.get("WWW-Authenticate", "")
    if response.status_code != 401 or 'error="insufficient_claims"' not in header:
        return None
    match = re.search(r'claims="([^"]*)"', header)
    return base64.b64decode(match.group(1)).decode("utf-8") if match else None


def main(argv: Sequence[str] | None = None, *, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(description="List the central API's customers.")
    parser.add_argument("--device-code", action="store_true", help="sign in on another device")
    parser.add_argument("--search", help="search text (name, e-mail, phone)")
    parser.add_argument("--page-size", type=int, default=10)
    parser.add_argument("--stack-env", type=Path, default=DEFAULT_STACK_ENV)
    parser.add_argument("--authority", help="https://login.microsoftonline.com/<tenant id>")
    parser.add_argument("--client-id", help="this app's client id (default: the demo's)")
    parser.add_argument("--api-url", help="the API's base URL")
    parser.add_argument("--api-client-id", help="the API's client id (scopes are api://<it>/...)")
    parser.add_argument("--subscription-key")
    parser.add_argument("--ca-bundle", help="CA bundle to trust (the dev stack's local CA)")
    args = parser.parse_args(argv)
    client = Client(
        _settings(args),
        device_code=args.device_code,
        show=lambda text: print(text, file=sys.stderr, flush=True),
    )
    try:
        page = client.customers(args.search, args.page_size)
    except SignInFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for item in page["items"]:
        out.write(json.dumps({"id": item.get("id"), "fullName": item.get("fullName")}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
