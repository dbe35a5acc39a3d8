"""What async functions read on the event loop before going to a thread: the Dataverse tokens
this instance already holds (`DownstreamTokens.cached_for_user` / `cached_for_app`), never
blocking, with real MSAL against the Entra emulator."""

from __future__ import annotations

from devstack.pki import Material
from devstack.tenant import Tenant
from shared.downstream import DownstreamTokens
from tests.conftest import Emulator
from tests.shared.test_downstream import settings, user_token


def test_a_users_token_is_cached_only_once_exchanged(
    entra: Emulator, tenant: Tenant, material: Material
) -> None:
    tokens = DownstreamTokens(settings(tenant, material, entra))
    incoming = user_token(entra, tenant)
    assert tokens.cached_for_user(incoming) is None
    exchanged = tokens.for_user(incoming)
    assert tokens.cached_for_user(incoming) == exchanged
    assert tokens.cached_for_user(user_token(entra, tenant)) is None  # another token: a miss
    assert tokens.obo_exchanges == 1


def test_the_apps_token_is_what_msal_last_answered_until_refused(
    entra: Emulator, tenant: Tenant, material: Material
) -> None:
    clock = [1_000_000.0]
    tokens = DownstreamTokens(settings(tenant, material, entra), clock=lambda: clock[0])
    assert tokens.cached_for_app() is None
    first = tokens.for_app()
    assert tokens.cached_for_app() == first
    tokens.for_app(stale=first)  # Dataverse refused it: dropped, a new one fetched
    renewed = tokens.cached_for_app()
    assert renewed is not None
    assert renewed != first
    clock[0] += 86_400  # past its expiry: not handed out on the loop
    assert tokens.cached_for_app() is None
