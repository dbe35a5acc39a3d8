"""The parts of host.json the dev host honours.

From `extensions.http` (version 2.0 layout; a version 1 file's top-level `http` is read too):

- `routePrefix` (default `"api"`; `""` serves functions at the root);
- `customHeaders`: added to every response that does not already carry the header.

Everything else (throttling, HSTS, timeouts, logging, extension bundles) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.host._errors import HostConfigError


@dataclass(frozen=True)
class HostSettings:
    route_prefix: str = "api"
    custom_headers: dict[str, str] = field(default_factory=dict)


def read_host_json(root: Path) -> HostSettings:
    """Settings from `root/host.json`; the defaults when there is no such file."""
    path = root / "host.json"
    if not path.exists():
        return HostSettings()
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise HostConfigError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(document, dict):
        raise HostConfigError(f"{path}: expected a JSON object")
    http = _object(document.get("extensions", {}), path, "extensions").get("http")
    if http is None:
        http = document.get("http", {})
    http = _object(http, path, "extensions.http")
    prefix = http.get("routePrefix", "api")
    headers = _object(http.get("customHeaders", {}), path, "extensions.http.customHeaders")
    if not isinstance(prefix, str):
        raise HostConfigError(f"{path}: extensions.http.routePrefix must be a string")
    if not all(isinstance(v, str) for v in headers.values()):
        raise HostConfigError(f"{path}: extensions.http.customHeaders values must be strings")
    return HostSettings(route_prefix=prefix.strip("/"), custom_headers=dict(headers))


def _object(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HostConfigError(f"{path}: {where} must be a JSON object")
    return value
