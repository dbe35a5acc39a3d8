"""Where the dev stack lives and the settings it hands to the API.

`.devstack/stack.env` (KEY=value lines) holds every setting the API host runs with, so that
scripts, tests and a Core Tools run (`func start`) reuse the same values.

The API authenticates to Entra as it does in Azure by default: with its managed identity as a
federated credential (`API_CLIENT_CREDENTIAL=managed-identity`), through the dev stack's
managed-identity endpoint (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`, as App Service sets them).
So stack.env carries no client secret and no certificate; `DEVSTACK_API_CLIENT_CREDENTIAL=secret`
or `certificate` runs the other modes. `IDENTITY_HEADER` is not a credential to Entra: App Service
hands it to the app so that the loopback endpoint answers the app alone, and a new one is made at
every start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import certifi

from devstack.latency import LatencySetting
from devstack.pki import Material
from devstack.tenant import Tenant

ROOT = Path(__file__).resolve().parent.parent

# The demo tenant's rate limits (docs/operations.md, "Rate limits"). `demo-dealer` is the
# dealer-sync batch integration's subscription: 300 calls a minute is at most 1,800 of the 6,000
# requests per 5 minutes that Dataverse allows the API's one application user, which every
# application-mode caller shares. `demo-portal` is not limited: the banner's commands, the test
# suite and `make bench` (P6: 50 clients for 30 s) all call with its key. `RATE_LIMITS` in the
# environment of `make run` replaces this, to watch a limit at work.
DEMO_RATE_LIMITS = {"demo-dealer": {"calls": 300, "period": 60}}

# How the API proves itself to Entra in the dev stack (API_CLIENT_CREDENTIAL).
CREDENTIAL_MODES = ("managed-identity", "certificate", "secret")
# The API's managed identity in tenant.toml.
API_IDENTITY = "central-api-identity"


def stack_dir() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", ROOT / ".devstack")).resolve()


@dataclass(frozen=True)
class Ports:
    entra: int = 7443
    dataverse: int = 7444
    api: int = 7071
    redis: int = 7379  # the shared store (valkey-server)
    spa: int = 7070  # the sample single-page app (devstack/spa.py)
    identity: int = 7445  # the managed-identity endpoint (plain HTTP, as App Service's)

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            entra=int(os.environ.get("DEVSTACK_ENTRA_PORT", cls.entra)),
            dataverse=int(os.environ.get("DEVSTACK_DATAVERSE_PORT", cls.dataverse)),
            api=int(os.environ.get("DEVSTACK_API_PORT", cls.api)),
            redis=int(os.environ.get("DEVSTACK_REDIS_PORT", cls.redis)),
            spa=int(os.environ.get("DEVSTACK_SPA_PORT", cls.spa)),
            identity=int(os.environ.get("DEVSTACK_IDENTITY_PORT", cls.identity)),
        )


def write_ca_bundle(material: Material) -> Path:
    """Public roots plus the local CA: dev processes reach both the emulators and the world."""
    bundle = material.folder / "ca-bundle.pem"
    bundle.write_text(
        Path(certifi.where()).read_text() + "\n" + material.ca_cert.read_text(), encoding="ascii"
    )
    return bundle


def credential_mode() -> str:
    """DEVSTACK_API_CLIENT_CREDENTIAL: how the dev stack's API authenticates to Entra."""
    mode = os.environ.get("DEVSTACK_API_CLIENT_CREDENTIAL", "").strip() or CREDENTIAL_MODES[0]
    if mode not in CREDENTIAL_MODES:
        raise ValueError(
            f"DEVSTACK_API_CLIENT_CREDENTIAL must be one of {', '.join(CREDENTIAL_MODES)}"
        )
    return mode


def credential_settings(
    tenant: Tenant,
    material: Material,
    mode: str,
    *,
    identity_url: str = "",
    identity_header: str = "",
) -> dict[str, str]:
    """The settings of one credential mode, and none of another's."""
    if mode == "secret":
        return {
            "API_CLIENT_CREDENTIAL": mode,
            "API_CLIENT_SECRET": material.client_secret("central-api"),
        }
    if mode == "certificate":
        return {
            "API_CLIENT_CREDENTIAL": mode,
            "API_CLIENT_CERTIFICATE_PATH": str(material.client_certs["central-api"]),
        }
    if mode != "managed-identity":
        raise ValueError(f"unknown credential mode {mode!r}")
    return {
        "API_CLIENT_CREDENTIAL": mode,
        "API_MANAGED_IDENTITY_CLIENT_ID": tenant.managed_identity(API_IDENTITY).client_id,
        # Set by the platform in Azure, and read by azure-identity and MSAL, not by the API.
        "IDENTITY_ENDPOINT": identity_url,
        "IDENTITY_HEADER": identity_header,
    }


def api_settings(
    tenant: Tenant,
    material: Material,
    *,
    entra_url: str,
    dataverse_url: str,
    api_url: str,
    redis_url: str,
    api_urls: list[str] | None = None,
    latency: LatencySetting | None = None,
    spa_url: str = "",
    credential: dict[str, str] | None = None,
) -> dict[str, str]:
    """Every setting the API host runs with against the dev stack (local.settings.json.example).

    `credential`: the settings of the credential mode (`credential_settings`); the client
    secret's when not given. DEVSTACK_CORS, the API hosts' allowed origins
    (devstack/host/_cors.py), is the sample SPA's origin unless the environment sets it (empty:
    no CORS)."""
    api = tenant.app("central-api")
    bundle = write_ca_bundle(material)
    keys = material.subscription_keys
    return {
        "AZURE_TENANT_ID": tenant.id,
        "AZURE_AUTHORITY_HOST": entra_url,
        "API_CLIENT_ID": api.client_id,
        **(credential or credential_settings(tenant, material, "secret")),
        "DATAVERSE_URL": dataverse_url,
        "SUBSCRIPTION_KEYS": json.dumps(keys, separators=(",", ":")),
        "API_DATA_KEY": material.api_data_key,
        "REDIS_URL": redis_url,
        "RATE_LIMITS": os.environ.get("RATE_LIMITS")
        or json.dumps(DEMO_RATE_LIMITS, separators=(",", ":")),
        "REQUESTS_CA_BUNDLE": str(bundle),
        # Not read by the API: for scripts, tests and the banner.
        "DEVSTACK_DIR": str(material.folder),
        "DEVSTACK_API_URL": api_url,
        "DEVSTACK_API_URLS": ",".join(api_urls or [api_url]),
        "DEVSTACK_ENTRA_URL": entra_url,
        "DEVSTACK_DATAVERSE_URL": dataverse_url,
        "DEVSTACK_REDIS_URL": redis_url,
        "DEVSTACK_SUBSCRIPTION_KEY": keys["demo-portal"][0],
        "DEVSTACK_SPA_URL": spa_url,
        # Read by the dev host, as Core Tools reads Host.CORS and Host.CORSCredentials.
        "DEVSTACK_CORS": os.environ.get("DEVSTACK_CORS", spa_url),
        "DEVSTACK_CORS_CREDENTIALS": os.environ.get("DEVSTACK_CORS_CREDENTIALS", "false"),
        # The profile the emulators started with (the control plane may switch it since).
        **(latency or LatencySetting()).as_env(),
    }


def write_env(path: Path, settings: dict[str, str]) -> None:
    lines = ["# Written by the dev stack (python -m devstack run). Secrets: do not commit."]
    for key, value in settings.items():
        if "\n" in value:
            raise ValueError(f"{key}: a setting cannot span lines")
        lines.append(f"{key}={value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)


def read_env(path: Path) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value
    return settings
