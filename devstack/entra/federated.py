"""Federated client assertions: a token from a trusted issuer standing in for the app's secret.

An app registration may carry federated identity credentials (FIC): issuer, subject and
audiences. A client that presents, as its `client_assertion`, a token whose `iss`, `sub` and
`aud` match one of them is authenticated as the app, with no secret of its own. On Azure the
token is the app's managed-identity token for `api://AzureADTokenExchange`.

Checked in Entra's order, with Entra's codes:
- the app has no FIC at all: 70021 (invalid_request), naming issuer, subject and audience;
- no FIC has this issuer: 700211; none has it with this subject: 700213; none with this
  audience too: 700212 (invalid_client). Matching is case-sensitive, as Entra's is since 2025;
- the signature, with the issuer's published keys: only this tenant's own issuer (the one
  managed-identity tokens carry) is known here; another issuer's keys cannot be fetched;
- the time range: 700024, with the clock skew Entra tolerates.
"""

from __future__ import annotations

from typing import Any

import jwt

from devstack.entra.directory import Directory
from devstack.entra.errors import InvalidClient, InvalidRequest
from devstack.entra.keys import KeyRing
from devstack.entra.metadata import Urls
from devstack.entra.signature import signed_claims
from devstack.entra.timefmt import iso, numeric_date
from devstack.tenant import App, FederatedCredential

SKEW = 300
_DOCS = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
_CHECK = (
    "Check your federated identity credential Subject, Audience and Issuer against the "
    f"presented assertion. {_DOCS}"
)


def is_federated(claims: dict[str, Any], app: App) -> bool:
    """A certificate's assertion is the app speaking of itself (RFC 7523: `iss` and `sub` are
    the client id; one of them wrong is that assertion's own error, 700021). A token about
    someone else, issued by someone else, is to be matched against the app's FICs."""
    own = app.client_id
    return not any(
        isinstance(c, str) and c.lower() == own for c in (claims.get("iss"), claims.get("sub"))
    )


def check_federated_assertion(
    app: App,
    assertion: str,
    claims: dict[str, Any],
    *,
    directory: Directory,
    keys: KeyRing,
    urls: Urls,
    now: float,
) -> FederatedCredential:
    """The FIC the assertion matched; `claims` are the assertion's, not yet verified."""
    issuer, subject = claims.get("iss"), claims.get("sub")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else audiences
    if (
        not isinstance(issuer, str)
        or not isinstance(subject, str)
        or not isinstance(audiences, list)
        or not all(isinstance(a, str) for a in audiences)
    ):
        raise InvalidClient(50027, "JWT token is invalid or malformed.")
    audience = " ".join(audiences)
    own_issuer = urls.issuer(2)
    records = [_resolved(f, own_issuer) for f in directory.federated_credentials(app)]
    if not records:
        raise InvalidRequest(
            70021,
            "No matching federated identity record found for presented assertion. Assertion "
            f"Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: "
            f"'{audience}'. {_DOCS}",
        )
    records = [f for f in records if f.issuer == issuer]
    if not records:
        raise InvalidClient(
            700211,
            f"No matching federated identity record found for presented assertion issuer "
            f"'{issuer}'. {_CHECK}",
        )
    records = [f for f in records if f.subject == subject]
    if not records:
        raise InvalidClient(
            700213,
            f"No matching federated identity record found for presented assertion subject "
            f"'{subject}'. {_CHECK}",
        )
    matched = next((f for f in records if any(a in f.audiences for a in audiences)), None)
    if matched is None:
        raise InvalidClient(
            700212,
            f"No matching federated identity record found for presented assertion audience "
            f"'{audience}'. {_CHECK}",
        )
    _check_signature(assertion, issuer, own_issuer, keys)
    _check_time_range(claims, now)
    return matched


def _resolved(credential: FederatedCredential, own_issuer: str) -> FederatedCredential:
    return FederatedCredential(
        credential.app,
        credential.name,
        credential.issuer.replace("{issuer}", own_issuer),
        credential.subject,
        credential.audiences,
    )


def _check_signature(assertion: str, issuer: str, own_issuer: str, keys: KeyRing) -> None:
    failed = "Client assertion failed signature validation. [Reason - The key was not found.]"
    if issuer != own_issuer:
        # Entra would fetch this issuer's OpenID configuration; the emulator knows only itself.
        raise InvalidClient(700027, f"{failed} The issuer's signing keys could not be fetched.")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise InvalidClient(50027, "JWT token is invalid or malformed.") from None
    kid = header.get("kid")
    key = keys.find(kid) if isinstance(kid, str) else None
    if key is None or header.get("alg") != "RS256":
        raise InvalidClient(700027, failed)
    try:
        signed_claims(assertion, key.key.public_key(), "RS256")
    except jwt.InvalidSignatureError:
        raise InvalidClient(
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature "
            "value did not match the expected signature value.]",
        ) from None
    except jwt.PyJWTError:
        raise InvalidClient(50027, "JWT token is invalid or malformed.") from None


def _check_time_range(claims: dict[str, Any], now: float) -> None:
    exp, nbf = numeric_date(claims.get("exp")), numeric_date(claims.get("nbf", 0))
    if exp is None or nbf is None:
        raise InvalidClient(50027, "JWT token is invalid or malformed.")
    if exp + SKEW < now or nbf - SKEW > now:
        raise InvalidClient(
            700024,
            f"Client assertion is not within its valid time range. Current time: {iso(now)}, "
            f"assertion valid from {iso(nbf)}, expiry time of assertion {iso(exp)}. {_DOCS}",
        )
