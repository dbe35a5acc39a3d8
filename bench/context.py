"""What the figures run against, started on demand and stopped at the end.

Key material (local CA, TLS certificate, signing keys, secrets) is generated into a temporary
folder, and `REQUESTS_CA_BUNDLE` points at a bundle holding the local CA, as under the tests.
The API's per-caller cap on concurrent requests is off (`NO_CALLER_CAP`): the figures put more
of one identity's requests in flight at once than a client should (ten of Alice's in P3, about
seventeen per identity in P6) to measure reuse and evenness, not the cap, for the same reason
that P6 raises the Dataverse emulator's limits.
The Entra emulator starts the first time a figure asks for it. User tokens are minted with the
emulator's own signing key (in process, without HTTP), in the claim shape the emulator issues.
So does a valkey-server of the bench's own (`valkey`, for the in-process figures on the shared
store); `store(settings)` builds the API's `Store` against it, connected, before any timing.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from devstack.config import write_ca_bundle
from devstack.pki import Material, ensure_material
from devstack.server import ServerThread
from devstack.stack import RunningStack
from devstack.tenant import Tenant, load_tenant
from shared.auth import SigningKeys
from shared.settings import Settings

if TYPE_CHECKING:
    from devstack.valkey import ValkeyServer
    from shared.store import Store

TOKEN_LIFETIME = 3600
USER_SCOPES = "customer.read customer.readwrite case.read case.readwrite"
NO_CALLER_CAP = {"MAX_CONCURRENT_REQUESTS_PER_CALLER": "0"}
# REDIS_TIMEOUT_SECONDS for the figures that time the store in process (P8, P9). They time the
# path where the store answers; with the API's default (0.1 s) a stall of this shared machine
# would turn a call into "unavailable" (a miss, a local count) and open the circuit breaker.
STORE_TIMEOUT_SECONDS = 5.0


class BenchContext:
    def __init__(self, *, quick: bool = False) -> None:
        self.quick = quick  # a smoke run: few rounds, numbers that mean little
        self._folder = tempfile.TemporaryDirectory(prefix="central-api-bench-")
        self.initial_environment = dict(os.environ)  # for child processes: as the shell gave it
        self.tenant: Tenant = load_tenant()
        self.material: Material = ensure_material(Path(self._folder.name), self.tenant)
        self.ca_bundle = write_ca_bundle(self.material)
        changed = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", *NO_CALLER_CAP)
        self._saved_env = {k: os.environ.get(k) for k in changed}
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.ca_bundle)
        os.environ.pop("CURL_CA_BUNDLE", None)
        os.environ.update(NO_CALLER_CAP)
        self._servers: list[ServerThread] = []
        self._stack: RunningStack | None = None
        self._entra_url: str | None = None
        self._entra: Any = None
        self._tokens: list[str] = []
        self._stack_claims: dict[str, dict[str, Any]] = {}
        self._sessions: list[requests.Session] = []
        self._valkey: ValkeyServer | None = None
        self._stores: list[Store] = []

    def __enter__(self) -> BenchContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        for store in self._stores:
            store.close()
        if self._valkey is not None:
            self._valkey.stop()
        if self._stack is not None:
            from shared import runtime

            runtime.reset()  # first: the API's async client closes on the host's event loop
            self._stack.stop()
        for server in reversed(self._servers):
            server.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._folder.cleanup()

    def scaled(self, full: int, quick: int) -> int:
        """`full` for a real run, `quick` for a smoke run (`python -m bench --quick`)."""
        return quick if self.quick else full

    @staticmethod
    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    # --- the Entra emulator ---------------------------------------------------------------------

    @property
    def entra_url(self) -> str:
        self._start_entra()
        assert self._entra_url is not None
        return self._entra_url

    @property
    def entra(self) -> Any:
        """The emulator's in-process handle (`devstack.entra.Entra`)."""
        self._start_entra()
        return self._entra

    def _start_entra(self) -> None:
        if self._entra is not None:
            return
        from devstack.entra import create_app

        server = ServerThread(
            name="entra-emulator", tls=(self.material.tls_cert, self.material.tls_key)
        )
        self._servers.append(server)
        app = create_app(self.tenant, self.material, base_url=server.url)
        server.start(app)
        self._entra_url = server.url
        self._entra = app.state.entra

    # --- the whole stack, for figures that go through Dataverse or the API host -----------------

    @property
    def stack(self) -> RunningStack:
        """Entra and Dataverse emulators and the API host, as `make run` starts them."""
        if self._stack is None:
            from devstack.config import Ports
            from devstack.host import RECOMMENDED
            from devstack.stack import start_stack

            folder = Path(self._folder.name)
            self._stack = start_stack(
                folder,
                ports=Ports(0, 0, 0, 0, 0, 0),
                db_path=folder / "dataverse.sqlite",
                host_settings=RECOMMENDED.environment(),  # as the README deploys it
            )
        return self._stack

    def new_stack_token(self, user: str) -> str:
        """A token for `user` from the `stack`'s Entra, in the claims the demo client gets but
        issued anew (its own `uti`, `iat` and `exp`): one that no API instance, cache or shared
        store has seen, so the first request with it makes an On-Behalf-Of exchange."""
        import jwt

        from devstack.client import DevClient

        if user not in self._stack_claims:
            issued = DevClient.from_stack(self.stack.material.folder).user_token(user)
            self._stack_claims[user] = jwt.decode(issued, options={"verify_signature": False})
        now = int(time.time())
        claims = {**self._stack_claims[user], "uti": uuid.uuid4().hex[:22]}
        claims.update(iat=now, nbf=now, exp=now + TOKEN_LIFETIME)
        return str(self.stack.entra_app.state.entra.sign(claims))

    # --- the shared store, for figures that time it in process -------------------------------

    @property
    def valkey(self) -> ValkeyServer:
        """A valkey-server of the bench's own, configured as the dev stack's (started on first
        use; the stack of `stack` and P6's have their own)."""
        if self._valkey is None:
            from devstack.valkey import ValkeyServer

            self._valkey = ValkeyServer(Path(self._folder.name) / "valkey").start()
        return self._valkey

    def store_settings(self, key_prefix: str, **overrides: Any) -> Settings:
        """`settings()` with the bench's valkey-server as the store, under `key_prefix`."""
        return self.settings(
            redis_url=self.valkey.url,
            redis_key_prefix=key_prefix,
            redis_timeout_seconds=STORE_TIMEOUT_SECONDS,
            **overrides,
        )

    def store(self, settings: Settings) -> Store:
        """The API's `Store` for `settings` (whose `redis_url` is set), as the runtime builds it,
        with its first connection open: importing redis-py and connecting stay out of timings."""
        from shared.store import build_store

        store = build_store(settings)
        assert store is not None, "settings without REDIS_URL"
        self._stores.append(store)
        assert store.ping(), "the store does not answer"
        return store

    # --- what the API is configured with --------------------------------------------------------

    @property
    def api_client_id(self) -> str:
        return self.tenant.app("central-api").client_id

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "tenant_id": self.tenant.id,
            "authority_host": self.entra_url,
            "api_client_id": self.api_client_id,
            "api_client_secret": self.material.client_secret("central-api"),
            "dataverse_url": self.tenant.app("dataverse").identifier_uris[0],
            "subscription_keys": {k: tuple(v) for k, v in self.material.subscription_keys.items()},
            "data_key": base64.b64decode(self.material.api_data_key),
        }
        values.update(overrides)
        return Settings(**values)

    def signing_keys(self) -> SigningKeys:
        """The tenant's keys, fetched from the emulator and ready."""
        session = requests.Session()
        self._sessions.append(session)
        keys = SigningKeys(f"{self.entra_url}/{self.tenant.id}", session=session)
        keys.current()
        return keys

    # --- tokens ---------------------------------------------------------------------------------

    def user_tokens(self, count: int) -> list[str]:
        """`count` access tokens for this API, each for a different user; minted once, shared
        by the figures (each figure builds its own validator, so they are new to it). They are
        issued by the standalone emulator (`entra_url`); the `stack` has an Entra of its own."""
        while len(self._tokens) < count:
            self._tokens.append(self._user_token())
        return self._tokens[:count]

    def _user_token(self) -> str:
        now = int(time.time())
        oid = str(uuid.uuid4())
        claims = {
            "aud": self.api_client_id,
            "iss": f"{self.entra_url}/{self.tenant.id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME,
            "aio": uuid.uuid4().hex + uuid.uuid4().hex,
            "azp": self.tenant.app("portal").client_id,
            "azpacr": "0",
            "idtyp": "user",
            "name": f"Bench User {oid[:8]}",
            "oid": oid,
            "preferred_username": f"bench.{oid[:8]}@{self.tenant.domain}",
            "rh": f"0.{uuid.uuid4().hex}.",
            "scp": USER_SCOPES,
            "sub": uuid.uuid4().hex,
            "tid": self.tenant.id,
            "uti": uuid.uuid4().hex[:22],
            "ver": "2.0",
        }
        return str(self.entra.sign(claims))
