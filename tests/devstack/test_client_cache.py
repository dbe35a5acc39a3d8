"""The CLI's MSAL token cache (`.devstack/msal-cache.json`) is valid for one tenant only.

After tenant.toml changes (a role granted, a scope added), a token cached before the change
would lack it until it expired; the cache is dropped instead. What counts is the tenant's
content (`Tenant.fingerprint`), not the file's comments or layout.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jwt

from devstack.client import CACHE_FILE, DevClient
from devstack.stack import RunningStack
from devstack.tenant import DEFAULT_TENANT_FILE, load_tenant


def _client(stack: RunningStack, folder: Path, **source_changes: object) -> DevClient:
    tenant = stack.tenant
    if source_changes:
        tenant = dataclasses.replace(tenant, source={**tenant.source, **source_changes})
    material = dataclasses.replace(stack.material, folder=folder)
    return DevClient(tenant, material, stack.settings)


def _uti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["uti"])


def test_a_cached_app_token_is_reused_for_the_same_tenant(
    stack: RunningStack, tmp_path: Path
) -> None:
    first = _client(stack, tmp_path).app_token("dealer-sync")
    again = _client(stack, tmp_path).app_token("dealer-sync")  # a new process, as the CLI is
    assert again == first
    saved = json.loads((tmp_path / CACHE_FILE).read_text())
    assert saved["tenant"] == stack.tenant.fingerprint


def test_a_tenant_change_drops_the_cached_tokens(stack: RunningStack, tmp_path: Path) -> None:
    first = _client(stack, tmp_path).app_token("dealer-sync")
    after = _client(stack, tmp_path, app_role_assignments=[]).app_token("dealer-sync")
    assert _uti(after) != _uti(first), "the token cached for the old tenant was reused"
    saved = json.loads((tmp_path / CACHE_FILE).read_text())
    assert saved["tenant"] != stack.tenant.fingerprint


def test_a_cache_file_without_a_fingerprint_is_dropped(stack: RunningStack, tmp_path: Path) -> None:
    """A cache written before fingerprints (plain MSAL JSON) may hold a stale token too."""
    first = _client(stack, tmp_path).app_token("dealer-sync")
    saved = json.loads((tmp_path / CACHE_FILE).read_text())
    (tmp_path / CACHE_FILE).write_text(json.dumps(saved["msal"]))
    assert _uti(_client(stack, tmp_path).app_token("dealer-sync")) != _uti(first)


def test_the_fingerprint_follows_content_not_layout(tmp_path: Path) -> None:
    original = DEFAULT_TENANT_FILE.read_text(encoding="utf-8")
    relaid = tmp_path / "tenant.toml"
    relaid.write_text("# a comment added\n\n" + original, encoding="utf-8")
    assert load_tenant(relaid).fingerprint == load_tenant().fingerprint
    changed = tmp_path / "changed.toml"
    changed.write_text(original.replace('"vehicle.readwrite"', '"vehicle.read"', 1))
    assert load_tenant(changed).fingerprint != load_tenant().fingerprint
