"""The dev stack's command line.

python -m devstack run                      start emulators + API host (what `make run` does)
python -m devstack host --port 7072         one more API host process, with stack.env's settings
python -m devstack token --user alice       print a user access token for the API
python -m devstack token --app dealer-sync  print an application access token for the API
python -m devstack call --user alice GET /api/customers
python -m devstack settings                 write local.settings.json for Core Tools
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from devstack.config import Ports, credential_mode, read_env, stack_dir

if TYPE_CHECKING:
    from devstack.host import InstanceLimits


def _run(args: argparse.Namespace) -> int:
    from devstack.host import HostConfigError
    from devstack.instances import HostStartError, instance_count
    from devstack.latency import LatencySetting
    from devstack.stack import start_stack
    from devstack.valkey import ValkeyError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    folder = stack_dir()
    try:
        count = instance_count()
        latency = LatencySetting.from_env()
        credential = credential_mode()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        running = start_stack(
            folder,
            ports=Ports.from_env(),
            db_path=folder / "dataverse.sqlite",
            api_instances=count,
            latency=latency,
            credential=credential,
            host_settings=_as_deployed(),
        )
    except (HostStartError, HostConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a port in use is the usual cause
        print(
            f"error: {exc}; choose other ports with DEVSTACK_ENTRA_PORT, "
            "DEVSTACK_DATAVERSE_PORT, DEVSTACK_API_PORT, DEVSTACK_REDIS_PORT or "
            "DEVSTACK_IDENTITY_PORT",
            file=sys.stderr,
        )
        return 2
    except ValkeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(banner(running.settings, running.limits), flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("\nStopping the dev stack...", flush=True)
    running.stop()
    print("Stopped.", flush=True)
    return 0


def banner(settings: dict[str, str], limits: InstanceLimits | None = None) -> str:
    py = ".venv/bin/python"
    api = settings["DEVSTACK_API_URL"]
    key = settings["DEVSTACK_SUBSCRIPTION_KEY"]
    more = settings.get("DEVSTACK_API_URLS", api).split(",")[1:]
    hosts = "".join(f"\n   API host {n:<11}{url}/api/" for n, url in enumerate(more, 2))
    if limits is not None:
        hosts += _limits_lines(limits)
    return f"""
================================================================================
 central API dev stack is running                          (Ctrl-C stops it)

   API host            {api}/api/{hosts}
   Sample SPA          {_spa(settings)}
   Entra ID emulator   {settings["DEVSTACK_ENTRA_URL"]}/{settings["AZURE_TENANT_ID"]}/v2.0
   Dataverse emulator  {settings["DEVSTACK_DATAVERSE_URL"]}/api/data/v9.2/
   Shared store        {_without_password(settings["DEVSTACK_REDIS_URL"])}   (valkey-server)
   API credential      {_credential(settings)}
   Latency profile     {_latency(settings)}
   Settings            {settings["DEVSTACK_DIR"]}/stack.env
   CA bundle           {settings["REQUESTS_CA_BUNDLE"]}
   Subscription key    {key}   (subscription "demo-portal")

 Try it (in another terminal, from this folder):

   # a user token (alice, signed in to the "portal" client app) and an app token
   TOKEN=$({py} -m devstack token --user alice)
   APP_TOKEN=$({py} -m devstack token --app dealer-sync)

   # call the API with it, as a client app would
   KEY={key}
   curl -s "{api}/api/customers?pageSize=2" -H "Ocp-Apim-Subscription-Key: $KEY" \\
        -H "Authorization: Bearer $TOKEN"

   # or let the CLI do all three steps
   {py} -m devstack call --user alice GET "/api/customers?q=hansen"
   {py} -m devstack call --app dealer-sync GET "/api/vehicles?pageSize=2"

 Users: alice, bob, carol, dave   Client apps: portal, reporting, dealer-sync, no-access
================================================================================
"""


def _credential(settings: dict[str, str]) -> str:
    mode = settings.get("API_CLIENT_CREDENTIAL", "secret")
    if mode == "managed-identity":
        return f"managed identity, federated   ({settings.get('IDENTITY_ENDPOINT', '')})"
    return f"{mode}   (DEVSTACK_API_CLIENT_CREDENTIAL=managed-identity is the default)"


def _as_deployed() -> dict[str, str]:
    """The API hosts' thread count and per-instance concurrency as the operators' guide deploys
    them (`RECOMMENDED`), where the environment does not set them: `make run` shows the API as
    it runs in Azure, not as an unconfigured Flex Consumption app would (1 request at a time)."""
    from devstack.host import RECOMMENDED

    return {k: v for k, v in RECOMMENDED.environment().items() if k not in os.environ}


def _limits_lines(limits: InstanceLimits) -> str:
    from devstack.host import CONCURRENCY_SETTING, RECOMMENDED, THREADS_SETTING

    threads = f"{limits.thread_count:<4}({THREADS_SETTING}"
    threads += ")" if limits.threads is not None else " unset: the worker's default)"
    deployed = limits == RECOMMENDED
    return (
        f"\n   Threads per host    {threads}"
        f"\n   Requests at once    {limits.concurrency} per host, the rest wait"
        f"   ({CONCURRENCY_SETTING})"
        + ("\n                       as docs/operations.md deploys the API" if deployed else "")
    )


def _spa(settings: dict[str, str]) -> str:
    """The sample SPA's address and the origins the API hosts allow by CORS."""
    from devstack.spa import MSAL_BUNDLE

    spa = settings.get("DEVSTACK_SPA_URL", "")
    origins = settings.get("DEVSTACK_CORS", "") or "none"
    if not spa:
        return f"not running   (CORS: {origins})"
    cors = "the API allows it by CORS" if origins == spa else f"CORS: {origins}"
    if not MSAL_BUNDLE.is_file():
        return f"{spa}/   (first `make spa`; {cors})"
    return f"{spa}/   ({cors})"


def _latency(settings: dict[str, str]) -> str:
    """The emulators' latency profile for the banner (docs/devstack.md, "Latency profiles")."""
    profile = settings.get("DEVSTACK_LATENCY", "none")
    seed = settings.get("DEVSTACK_LATENCY_SEED")
    if profile == "none":
        return "none   (no delays; DEVSTACK_LATENCY=azure adds Azure's)"
    return f"{profile}{f', seed {seed}' if seed else ''}   (emulated delays; /_emulator/latency)"


def _host(args: argparse.Namespace) -> int:
    from devstack.instances import default_env_file, serve

    env_file = None if args.no_env_file else (args.env_file or default_env_file())
    return serve(
        port=args.port,
        fd=args.fd,
        name=args.name,
        env_file=env_file,
        function_app=args.function_app,
        exit_with_parent=args.exit_with_parent,
    )


def _without_password(url: str) -> str:
    """The store's URL for the banner: its password stays in stack.env."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _token(args: argparse.Namespace) -> int:
    from devstack.client import DevClient

    client = DevClient.from_stack()
    if args.app:
        print(client.app_token(args.app))
    else:
        print(client.user_token(args.user, client=args.client, scopes=args.scope))
    return 0


def _call(args: argparse.Namespace) -> int:
    from devstack.client import ClientError, DevClient

    client = DevClient.from_stack()
    token: str | None = None
    if args.app:
        token = client.app_token(args.app)
    elif args.user:
        token = client.user_token(args.user, client=args.client, scopes=args.scope)
    body: Any = json.loads(args.data) if args.data else None
    headers: dict[str, str] = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise ClientError(f"--header {header!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    response = client.call(args.method, args.path, token=token, body=body, headers=headers)
    print(f"HTTP {response.status_code}", file=sys.stderr)
    for name in ("Content-Type", "ETag", "WWW-Authenticate", "Retry-After", "x-correlation-id"):
        if name in response.headers:
            print(f"{name}: {response.headers[name]}", file=sys.stderr)
    try:
        print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    except ValueError:
        print(response.text)
    return 0 if response.ok else 1


def _settings(args: argparse.Namespace) -> int:
    """local.settings.json for `func start`, from the running stack's stack.env.

    An existing file is left alone unless `--force` (`make settings FORCE=1`): it may hold a
    real tenant's settings typed in by hand, which the dev stack's would silently replace. No
    backup is kept instead: a copy of those secrets lying next to it is worse than a refusal.
    """
    settings = read_env(stack_dir() / "stack.env")
    values = {"FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": ""}
    values |= {k: v for k, v in settings.items() if not k.startswith("DEVSTACK_")}
    # Core Tools' own CORS settings, the ones the dev host reads as DEVSTACK_CORS*.
    host = {
        "CORS": settings.get("DEVSTACK_CORS", ""),
        "CORSCredentials": settings.get("DEVSTACK_CORS_CREDENTIALS", "false") == "true",
    }
    document = {"IsEncrypted": False, "Values": values, "Host": host}
    path = stack_dir().parent / "local.settings.json"
    if path.exists() and not args.force:
        print(
            f"error: {path} exists; not overwritten (make settings FORCE=1, or "
            "python -m devstack settings --force, replaces it)",
            file=sys.stderr,
        )
        return 1
    path.write_text(json.dumps(document, indent=2) + "\n")
    path.chmod(0o600)
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the dev stack").set_defaults(func=_run)
    settings = sub.add_parser("settings", help="write local.settings.json for Core Tools")
    settings.add_argument(
        "--force", action="store_true", help="replace an existing local.settings.json"
    )
    settings.set_defaults(func=_settings)

    host = sub.add_parser("host", help="serve the API alone, as one more instance")
    where = host.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="port to listen on (0: a free one)")
    where.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # a socket from the parent
    files = host.add_mutually_exclusive_group()
    files.add_argument(
        "--env-file", type=Path, help="settings applied over the environment (default: stack.env)"
    )
    files.add_argument(
        "--no-env-file", action="store_true", help="settings from the environment only"
    )
    host.add_argument("--name", default="api-host", help=argparse.SUPPRESS)
    host.add_argument("--function-app", default="function_app", help=argparse.SUPPRESS)
    host.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    host.set_defaults(func=_host)

    def who(p: argparse.ArgumentParser, required: bool) -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--user", help="demo user: alice, bob, carol, dave")
        group.add_argument("--app", help="confidential client app acting as itself")
        p.add_argument("--client", default="portal", help="client app the user signs in to")
        p.add_argument("--scope", nargs="+", help="scopes (default: .default)")

    token = sub.add_parser("token", help="print an access token for the API")
    who(token, required=True)
    token.set_defaults(func=_token)

    call = sub.add_parser("call", help="get a token and call the API")
    who(call, required=False)
    call.add_argument("method")
    call.add_argument("path")
    call.add_argument("--data", help="JSON request body")
    call.add_argument("--header", "-H", action="append", default=[], help="extra 'Name: value'")
    call.set_defaults(func=_call)

    args = parser.parse_args(argv)
    import requests

    from devstack.client import ClientError

    try:
        return int(args.func(args))
    except (FileNotFoundError, KeyError, ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, ClientError) else 2
    except (requests.ConnectionError, requests.Timeout) as exc:
        print(
            f"error: the dev stack did not answer ({type(exc).__name__}); is `make run` running?",
            file=sys.stderr,
        )
        return 2
    except requests.RequestException as exc:
        print(f"error: the request could not be sent ({type(exc).__name__})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
