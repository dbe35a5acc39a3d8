"""Settings: read once from the environment into a typed object that fails fast.

Azure delivers app settings as environment variables; Core Tools loads `local.settings.json`
into the environment; the dev stack exports `.devstack/stack.env`. Every setting is listed in
`local.settings.json.example` and docs/operations.md (Settings).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import urlsplit


class SettingsError(RuntimeError):
    """A setting is missing or malformed. The message names the setting, never its value."""


# Signing keys are fetched at most this often (shared/auth/keys.py), so a maximum age below it
# would leave them stale most of the time.
KEY_REFRESH_INTERVAL_SECONDS = 300

# A page token outliving a day is no longer paging; the cap also keeps its expiry in 4 bytes.
MAX_PAGE_TOKEN_LIFETIME = 86_400

# Bounds of a per-subscription rate limit (RATE_LIMITS). Like API Management's
# `rate-limit-by-key`, whose renewal period is at most 300 seconds: a rate limit answers bursts,
# and 300 s is also the window of Dataverse's service-protection limits that it guards.
MAX_RATE_LIMIT_CALLS = 1_000_000
MAX_RATE_LIMIT_PERIOD = 300

# How the API proves itself to Entra (API_CLIENT_CREDENTIAL), and to the shared store
# (REDIS_CREDENTIAL).
CREDENTIAL_MODES = ("managed-identity", "certificate", "secret")
REDIS_CREDENTIALS = ("access-key", "managed-identity")
# The audience of a managed identity's token used as a federated credential, in Azure's public
# cloud (sovereign clouds have their own: API_MANAGED_IDENTITY_AUDIENCE).
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"

# Used with `fullmatch`: `match` with `$` also accepts a final "\n".
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class RateLimit:
    """At most `calls` requests per `period_seconds` (`shared.http.rate_limits`)."""

    calls: int
    period_seconds: int


@dataclass(frozen=True)
class Settings:
    tenant_id: str
    authority_host: str
    api_client_id: str
    dataverse_url: str
    subscription_keys: Mapping[str, tuple[str, ...]] = field(repr=False)
    # API_DATA_KEY: the secret every instance shares; each use derives its own subkey from it
    # (shared/datakeys.py).
    data_key: bytes = field(repr=False)
    api_client_secret: str | None = field(default=None, repr=False)
    api_client_certificate_path: str | None = None
    # API_CLIENT_CREDENTIAL: "managed-identity", "certificate" or "secret". None (only when built
    # in code) reads as whichever of the secret and the certificate is set (`credential`).
    api_client_credential: str | None = None
    # The user-assigned managed identity's client id; None: the system-assigned identity.
    api_managed_identity_client_id: str | None = None
    api_managed_identity_audience: str = TOKEN_EXCHANGE_AUDIENCE
    clock_skew_seconds: int = 120
    subscription_key_in_query: bool = False
    downstream_timeout_seconds: float = 10.0
    request_budget_seconds: float = 25.0
    obo_cache_size: int = 10_000
    validated_token_cache_size: int = 10_000
    dataverse_pool_size: int = 32
    signing_keys_max_age_seconds: int = 86_400
    signing_keys_grace_seconds: int = 3_600
    dataverse_max_retry_wait_seconds: float = 2.0
    data_key_previous: bytes | None = field(default=None, repr=False)
    page_token_lifetime_seconds: int = 3600
    max_concurrent_requests_per_caller: int = 8
    # Empty: any client app of the tenant may call (shared.auth.clients).
    allowed_client_app_ids: frozenset[str] = field(default_factory=frozenset)
    subscription_client_app_ids: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The shared store (shared.store); None: every instance works alone. The URL may hold a
    # password, so it is never shown.
    redis_url: str | None = field(default=None, repr=False)
    redis_timeout_seconds: float = 0.1
    redis_breaker_seconds: float = 5.0
    redis_key_prefix: str = "capi"
    # "access-key": the password REDIS_URL carries (if any); "managed-identity": a Microsoft
    # Entra token of the managed identity (redis-entraid), as Azure Managed Redis takes.
    redis_credential: str = "access-key"
    # Empty: no subscription is rate limited (shared.http.rate_limits).
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    # How long an instance waits for another's On-Behalf-Of exchange of the same token
    # (shared.downstream.shared_cache) before it makes its own.
    obo_shared_wait_seconds: float = 2.0

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def credential(self) -> str:
        """How the API authenticates to Entra: "managed-identity", "certificate" or "secret"."""
        if self.api_client_credential is not None:
            return self.api_client_credential
        return "secret" if self.api_client_secret else "certificate"

    @property
    def api_app_id_uri(self) -> str:
        return f"api://{self.api_client_id}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise SettingsError(f"setting {name} is missing")
            return value

        def optional(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def guid(name: str) -> str:
            value = required(name)
            if not _GUID.fullmatch(value):
                raise SettingsError(f"setting {name} must be a GUID")
            return str(uuid.UUID(value))

        def url(name: str) -> str:
            value = required(name).rstrip("/")
            if not value.startswith("https://"):
                raise SettingsError(f"setting {name} must be an https:// URL")
            return value

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            raw = optional(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"setting {name} must be a number") from None
            if value < 0:
                raise SettingsError(f"setting {name} must not be negative")
            return value

        def key_bytes(name: str, value: str) -> bytes:
            key = _key_bytes(value)
            if key is None:
                raise SettingsError(f"setting {name} must be base64 of 32 random bytes")
            return key

        lifetime = int(number("PAGE_TOKEN_LIFETIME_SECONDS", 3600, int))
        if not 1 <= lifetime <= MAX_PAGE_TOKEN_LIFETIME:
            raise SettingsError("setting PAGE_TOKEN_LIFETIME_SECONDS must be 1 second to 1 day")
        previous = optional("API_DATA_KEY_PREVIOUS")

        secret = optional("API_CLIENT_SECRET")
        cert = optional("API_CLIENT_CERTIFICATE_PATH")
        mode = _credential_mode(optional("API_CLIENT_CREDENTIAL"), secret, cert)
        identity_client_id = (
            guid("API_MANAGED_IDENTITY_CLIENT_ID")
            if optional("API_MANAGED_IDENTITY_CLIENT_ID")
            else None
        )
        if identity_client_id and mode != "managed-identity":
            raise SettingsError(
                "setting API_MANAGED_IDENTITY_CLIENT_ID is set but API_CLIENT_CREDENTIAL is not "
                "managed-identity"
            )
        audience = optional("API_MANAGED_IDENTITY_AUDIENCE") or TOKEN_EXCHANGE_AUDIENCE
        redis_url = _redis_url(optional("REDIS_URL"))
        redis_credential = _redis_credential(optional("REDIS_CREDENTIAL"), redis_url)
        if redis_credential == "managed-identity" and mode != "managed-identity":
            raise SettingsError(
                "setting REDIS_CREDENTIAL=managed-identity uses the API's managed identity: set "
                "API_CLIENT_CREDENTIAL=managed-identity too"
            )
        subscription_keys = _subscription_keys(required("SUBSCRIPTION_KEYS"))
        redis_timeout = float(number("REDIS_TIMEOUT_SECONDS", 0.1, float))
        if not 0 < redis_timeout <= 10:
            # 0 would make redis-py's sockets non-blocking rather than quick to give up; a store
            # slower than seconds is no cache.
            raise SettingsError("setting REDIS_TIMEOUT_SECONDS must be above 0 and at most 10")
        key_prefix = optional("REDIS_KEY_PREFIX") or "capi"
        if not _KEY_PREFIX.fullmatch(key_prefix):
            raise SettingsError(
                "setting REDIS_KEY_PREFIX must be 1 to 64 letters, digits, '_', '.' or '-'"
            )
        obo_wait = float(number("OBO_SHARED_WAIT_SECONDS", 2.0, float))
        if not 0 <= obo_wait <= 10:  # written so that NaN fails too
            # A wait is spent of the request's budget; an exchange slower than this is a failing
            # token endpoint, better met by each instance's own exchange (and its error).
            raise SettingsError("setting OBO_SHARED_WAIT_SECONDS must be 0 to 10")
        allowed = _client_app_ids(optional("ALLOWED_CLIENT_APP_IDS"))
        return cls(
            tenant_id=guid("AZURE_TENANT_ID"),
            authority_host=url("AZURE_AUTHORITY_HOST"),
            api_client_id=guid("API_CLIENT_ID"),
            dataverse_url=url("DATAVERSE_URL"),
            subscription_keys=subscription_keys,
            api_client_secret=secret,
            api_client_certificate_path=cert,
            api_client_credential=mode,
            api_managed_identity_client_id=identity_client_id,
            api_managed_identity_audience=audience,
            clock_skew_seconds=int(number("CLOCK_SKEW_SECONDS", 120, int)),
            subscription_key_in_query=(optional("SUBSCRIPTION_KEY_IN_QUERY") or "false").lower()
            in ("1", "true", "yes"),
            downstream_timeout_seconds=float(number("DOWNSTREAM_TIMEOUT_SECONDS", 10.0, float)),
            request_budget_seconds=float(number("REQUEST_BUDGET_SECONDS", 25.0, float)),
            obo_cache_size=int(number("OBO_CACHE_SIZE", 10_000, int)),
            validated_token_cache_size=int(number("VALIDATED_TOKEN_CACHE_SIZE", 10_000, int)),
            dataverse_pool_size=max(1, int(number("DATAVERSE_POOL_SIZE", 32, int))),
            signing_keys_max_age_seconds=_at_least(
                "SIGNING_KEYS_MAX_AGE_SECONDS",
                int(number("SIGNING_KEYS_MAX_AGE_SECONDS", 86_400, int)),
                KEY_REFRESH_INTERVAL_SECONDS,
            ),
            signing_keys_grace_seconds=int(number("SIGNING_KEYS_GRACE_SECONDS", 3_600, int)),
            dataverse_max_retry_wait_seconds=float(
                number("DATAVERSE_MAX_RETRY_WAIT_SECONDS", 2.0, float)
            ),
            data_key=key_bytes("API_DATA_KEY", required("API_DATA_KEY")),
            data_key_previous=(
                None if previous is None else key_bytes("API_DATA_KEY_PREVIOUS", previous)
            ),
            page_token_lifetime_seconds=lifetime,
            max_concurrent_requests_per_caller=int(
                number("MAX_CONCURRENT_REQUESTS_PER_CALLER", 8, int)
            ),
            allowed_client_app_ids=allowed,
            subscription_client_app_ids=_subscription_client_app_ids(
                optional("SUBSCRIPTION_CLIENT_APP_IDS"), subscription_keys, allowed
            ),
            redis_url=redis_url,
            redis_credential=redis_credential,
            redis_timeout_seconds=redis_timeout,
            redis_breaker_seconds=float(number("REDIS_BREAKER_SECONDS", 5.0, float)),
            redis_key_prefix=key_prefix,
            rate_limits=_rate_limits(optional("RATE_LIMITS"), subscription_keys),
            obo_shared_wait_seconds=obo_wait,
        )


def _credential_mode(mode: str | None, secret: str | None, cert: str | None) -> str:
    """API_CLIENT_CREDENTIAL, checked against the credential settings: each mode takes its own
    and refuses another's, so a deployment never runs on a credential it did not mean to. Unset
    (deployments from before the setting), the one credential setting present decides; the
    managed identity is never inferred, it is chosen."""
    name = "API_CLIENT_CREDENTIAL"
    if mode is None:
        if secret and cert:
            raise SettingsError(
                f"settings API_CLIENT_SECRET and API_CLIENT_CERTIFICATE_PATH are both set: "
                f"set {name} to say which"
            )
        if not secret and not cert:
            raise SettingsError(
                f"setting {name} is missing: managed-identity, or certificate with "
                "API_CLIENT_CERTIFICATE_PATH, or secret with API_CLIENT_SECRET"
            )
        return "secret" if secret else "certificate"
    if mode not in CREDENTIAL_MODES:
        raise SettingsError(f"setting {name} must be managed-identity, certificate or secret")
    wanted = {"secret": "API_CLIENT_SECRET", "certificate": "API_CLIENT_CERTIFICATE_PATH"}
    present = {"API_CLIENT_SECRET": secret, "API_CLIENT_CERTIFICATE_PATH": cert}
    for setting, value in present.items():
        if value and wanted.get(mode) != setting:
            raise SettingsError(f"setting {setting} contradicts {name}={mode}: remove it")
    if mode in wanted and not present[wanted[mode]]:
        raise SettingsError(f"setting {wanted[mode]} is missing ({name}={mode})")
    return mode


def _redis_credential(value: str | None, redis_url: str | None) -> str:
    name = "REDIS_CREDENTIAL"
    credential = value or "access-key"
    if credential not in REDIS_CREDENTIALS:
        raise SettingsError(f"setting {name} must be access-key or managed-identity")
    if credential == "managed-identity":
        if redis_url is None:
            raise SettingsError(f"setting {name}=managed-identity needs REDIS_URL")
        parts = urlsplit(redis_url)
        if parts.password or parts.username:
            raise SettingsError(
                f"setting REDIS_URL carries a user or password, which contradicts {name}="
                "managed-identity: remove them"
            )
    return credential


def _at_least(name: str, value: int, minimum: int) -> int:
    if value < minimum:
        raise SettingsError(f"setting {name} must be at least {minimum}")
    return value


def _redis_url(value: str | None) -> str | None:
    """redis:// or rediss:// with a host. The message never echoes the URL: it may hold a
    password (an access key)."""
    name = "REDIS_URL"
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss"):
        raise SettingsError(f"setting {name} must be a redis:// or rediss:// URL")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise SettingsError(f"setting {name} has an invalid port") from None
    if not parts.hostname:
        raise SettingsError(f"setting {name} must name a host")
    return value


def _key_bytes(text: str) -> bytes | None:
    """32 bytes from canonical standard base64 (as `openssl rand -base64 32` prints), else None."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != 32 or base64.b64encode(key).decode("ascii") != text:
        return None
    return key


def _json(name: str, raw: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        raise SettingsError(f"setting {name} must be JSON") from None


def _subscription_keys(raw: str) -> dict[str, tuple[str, ...]]:
    data = _json("SUBSCRIPTION_KEYS", raw)
    if not isinstance(data, dict) or not data:
        raise SettingsError('setting SUBSCRIPTION_KEYS must be {"name": ["key", ...], ...}')
    keys: dict[str, tuple[str, ...]] = {}
    for name, values in data.items():
        if isinstance(values, str):
            values = [values]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and len(v) >= 16 for v in values)
        ):
            raise SettingsError(
                f"setting SUBSCRIPTION_KEYS: subscription {name!r} needs keys of 16+ characters"
            )
        keys[str(name)] = tuple(values)
    return keys


def _guids(values: object, error: str) -> frozenset[str]:
    """A JSON list of GUIDs, in their canonical lower-case form."""
    if not isinstance(values, list) or not all(
        isinstance(v, str) and _GUID.fullmatch(v) for v in values
    ):
        raise SettingsError(error)
    return frozenset(str(uuid.UUID(v)) for v in values)


def _client_app_ids(raw: str | None) -> frozenset[str]:
    name = "ALLOWED_CLIENT_APP_IDS"
    if raw is None:
        return frozenset()
    return _guids(_json(name, raw), f"setting {name} must be a JSON list of GUIDs")


def _subscription_client_app_ids(
    raw: str | None, subscriptions: Mapping[str, object], allowed: frozenset[str]
) -> dict[str, frozenset[str]]:
    """Which client apps each bound subscription accepts. Names must be subscriptions of
    SUBSCRIPTION_KEYS and every app must be allowed at all: a binding that can never match is a
    mistake, refused at start-up rather than found in production as 403s."""
    name = "SUBSCRIPTION_CLIENT_APP_IDS"
    if raw is None:
        return {}
    data = _json(name, raw)
    if not isinstance(data, dict):
        raise SettingsError(f'setting {name} must be {{"subscription name": ["client id", ...]}}')
    bound: dict[str, frozenset[str]] = {}
    for subscription, values in data.items():
        if subscription not in subscriptions:
            raise SettingsError(f"setting {name} names a subscription SUBSCRIPTION_KEYS lacks")
        ids = _guids(values, f"setting {name}: each subscription needs a JSON list of GUIDs")
        if not ids:
            raise SettingsError(f"setting {name} binds a subscription to no client app")
        if allowed and not ids <= allowed:
            raise SettingsError(f"setting {name} binds an app ALLOWED_CLIENT_APP_IDS lacks")
        bound[subscription] = ids
    return bound


def _rate_limits(raw: str | None, subscriptions: Mapping[str, object]) -> dict[str, RateLimit]:
    """`{"subscription name": {"calls": 300, "period": 60}, ...}`. Names must be subscriptions of
    SUBSCRIPTION_KEYS: a limit on a name no key leads to would never apply, and a key pasted
    where a name belongs must not start up (nor be repeated in the error)."""
    name = "RATE_LIMITS"
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise SettingsError(f"setting {name} must be JSON") from None
    if not isinstance(data, dict):
        raise SettingsError(
            f'setting {name} must be {{"subscription name": {{"calls": n, "period": seconds}}}}'
        )
    limits: dict[str, RateLimit] = {}
    for subscription, limit in data.items():
        if subscription not in subscriptions:
            raise SettingsError(f"setting {name} names a subscription SUBSCRIPTION_KEYS lacks")
        if (
            not isinstance(limit, dict)
            or set(limit) != {"calls", "period"}
            or not _whole(limit["calls"], MAX_RATE_LIMIT_CALLS)
            or not _whole(limit["period"], MAX_RATE_LIMIT_PERIOD)
        ):
            raise SettingsError(
                f'setting {name}: each subscription needs {{"calls": 1 to '
                f'{MAX_RATE_LIMIT_CALLS}, "period": 1 to {MAX_RATE_LIMIT_PERIOD} seconds}}'
            )
        limits[subscription] = RateLimit(limit["calls"], limit["period"])
    return limits


def _whole(value: object, maximum: int) -> bool:
    """A JSON whole number from 1 to `maximum` (not `true`, which Python counts as 1)."""
    return type(value) is int and 1 <= value <= maximum


@cache
def get_settings() -> Settings:
    """The process's settings, read on first use (not at import, so start-up stays cheap)."""
    return Settings.from_env()
