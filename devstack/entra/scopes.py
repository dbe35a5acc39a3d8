"""The `scope` parameter: which resource a token is for, and which of its scopes were asked for.

Entra allows one resource per request, addressed by App ID URI, client id or (Dataverse) URL,
followed by `/scope` or `/.default`. A bare scope such as `User.Read` means Microsoft Graph.
`openid`, `profile`, `email` and `offline_access` are OpenID Connect scopes, not resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.entra.directory import Directory
from devstack.entra.errors import InvalidRequest, InvalidResource, InvalidScope
from devstack.tenant import App

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
DEFAULT = ".default"
GRAPH = "https://graph.microsoft.com"


@dataclass(frozen=True)
class ScopeRequest:
    resource: App
    names: tuple[str, ...]  # canonical scope names on the resource, or (".default",)
    oidc: frozenset[str]

    @property
    def is_default(self) -> bool:
        return self.names == (DEFAULT,)


def require(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidRequest(
            900144, f"The request body must contain the following parameter: '{name}'."
        )
    return value


def parse_scope(directory: Directory, raw: str) -> ScopeRequest:
    tokens = raw.split()
    oidc = frozenset(t.lower() for t in tokens if t.lower() in OIDC_SCOPES)
    targets = [_split(t) for t in tokens if t.lower() not in OIDC_SCOPES]
    identifiers = {identifier.rstrip("/").lower() for identifier, _ in targets}
    if len(identifiers) > 1:
        raise InvalidScope(
            28000,
            "Provided value for the input parameter scope is not valid because it contains more "
            f"than one resource. Scope {raw} is not valid.",
        )
    identifier = targets[0][0] if targets else GRAPH
    resource = directory.resource_by_identifier(identifier)
    if resource is None:
        raise InvalidResource(
            500011,
            f"The resource principal named {identifier} was not found in the tenant named "
            f"{directory.tenant.name}. This can happen if the application has not been installed "
            "by the administrator of the tenant or consented to by any user in the tenant. You "
            "might have sent your authentication request to the wrong tenant.",
        )
    return ScopeRequest(resource, _names(resource, [n for _, n in targets], raw), oidc)


def resource_default(directory: Directory, resource: str) -> ScopeRequest:
    """The v1 endpoint's `resource` parameter, read as `{resource}/.default`."""
    return parse_scope(directory, f"{resource.rstrip('/')}/{DEFAULT}")


def _split(token: str) -> tuple[str, str]:
    if "/" not in token:
        return GRAPH, token
    identifier, _, name = token.rpartition("/")
    return identifier, name


def _names(resource: App, requested: list[str], raw: str) -> tuple[str, ...]:
    exposed = {s.lower(): s for s in resource.scopes}
    names: list[str] = []
    for name in requested:
        canonical = DEFAULT if name.lower() == DEFAULT else exposed.get(name.lower())
        if canonical is None:
            raise InvalidScope(
                70011,
                "The provided value for the input parameter 'scope' is not valid. "
                f"The scope {raw} is not valid.",
            )
        if canonical not in names:
            names.append(canonical)
    if DEFAULT in names and len(names) > 1:
        raise InvalidScope(
            70011,
            "The provided value for the input parameter 'scope' is not valid. "
            f"The scope {raw} is not valid. static scope limit exceeded.",
        )
    return tuple(names)
