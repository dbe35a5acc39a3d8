"""The on-behalf-of `assertion`: the user token a middle-tier API received and now exchanges.

Checked the way Entra checks it, in Entra's order: a JWT, signed by a key in the current JWKS,
issued by this tenant, unexpired, addressed to the app presenting it, and a *user* token.
"""

from __future__ import annotations

from typing import Any

import jwt

from devstack.entra.directory import Directory
from devstack.entra.errors import InvalidGrant, InvalidRequest
from devstack.entra.keys import KeyRing
from devstack.entra.metadata import Urls
from devstack.entra.signature import signed_claims
from devstack.entra.signin import SignIn
from devstack.entra.timefmt import iso, numeric_date
from devstack.entra.tokens import decode_aio
from devstack.pki import SigningKey
from devstack.tenant import App, User

SKEW = 300


def validate_user_assertion(
    assertion: str,
    *,
    client: App,
    keys: KeyRing,
    directory: Directory,
    urls: Urls,
    now: float,
) -> tuple[User, SignIn]:
    """The user the assertion stands for, and how they signed in (`amr` of a v1 token, Entra's
    `aio` of a v2 one; `acrs`)."""
    header = _header(assertion)
    key = _signing_key(header, keys)
    claims = _verified_claims(assertion, key, header)
    if claims.get("iss") not in (urls.issuer(1), urls.issuer(2)):
        raise InvalidGrant(
            50013,
            f"Assertion failed signature validation. [Reason - The issuer '{claims.get('iss')}' "
            "of the assertion is not valid for this tenant.]",
        )
    _check_lifetime(claims, now)
    audience = claims.get("aud")
    if not isinstance(audience, str) or audience.rstrip("/").lower() not in directory.names_of(
        client
    ):
        raise InvalidGrant(
            500131,
            "Assertion audience does not match the Client app presenting the assertion. The "
            f"audience in the assertion was '{audience}' and the expected audience is "
            f"'{client.client_id}' or one of the Application Uris of this application with App "
            f"ID '{client.client_id}'({client.name}). The downstream client must request a token "
            "for the expected audience (the application that made the OBO request) and this "
            "application should use that token as the assertion.",
        )
    if claims.get("idtyp") == "app" or not isinstance(claims.get("scp"), str):
        raise InvalidGrant(
            50013,
            "Assertion is not a user token. The on-behalf-of flow needs an access token issued "
            "to a user (with delegated scopes); application tokens cannot be exchanged.",
        )
    oid = claims.get("oid")
    user = directory.user_by_oid(oid) if isinstance(oid, str) else None
    if user is None:
        raise InvalidGrant(
            50034,
            f"The user account {{EmailHidden}} does not exist in the {urls.tenant_id} directory. "
            "To sign into this application, the account must be added to the directory.",
        )
    amr = claims.get("amr")
    methods = (
        tuple(m for m in amr if isinstance(m, str))
        if isinstance(amr, list)
        else decode_aio(claims.get("aio"))
    )
    acrs = claims.get("acrs")
    contexts = tuple(c for c in acrs if isinstance(c, str)) if isinstance(acrs, list) else ()
    return user, SignIn(user.name, methods or ("pwd",), contexts)


def _header(assertion: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise InvalidRequest(50027, "JWT token is invalid or malformed.") from None
    return header


def _signing_key(header: dict[str, Any], keys: KeyRing) -> SigningKey:
    kid, x5t = header.get("kid"), header.get("x5t")
    key = None
    if isinstance(kid, str):
        key = keys.find(kid)
    if key is None and isinstance(x5t, str):
        key = next((k for k in keys.published() if k.x5t == x5t), None)
    if key is None or header.get("alg") != "RS256":
        raise InvalidGrant(
            50013,
            "Assertion failed signature validation. [Reason - The key was not found., Thumbprint "
            f"of key used by client: '{kid if isinstance(kid, str) else ''}']",
        )
    return key


def _verified_claims(assertion: str, key: SigningKey, header: dict[str, Any]) -> dict[str, Any]:
    try:
        return signed_claims(assertion, key.key.public_key(), "RS256")
    except jwt.InvalidSignatureError:
        raise InvalidGrant(
            50013,
            "Assertion failed signature validation. [Reason - The provided signature value did "
            f"not match the expected signature value., Thumbprint of key used by client: "
            f"'{header.get('kid')}']",
        ) from None
    except jwt.PyJWTError:
        raise InvalidRequest(50027, "JWT token is invalid or malformed.") from None


def _check_lifetime(claims: dict[str, Any], now: float) -> None:
    exp, nbf = numeric_date(claims.get("exp")), numeric_date(claims.get("nbf", 0))
    if exp is None or nbf is None:
        raise InvalidRequest(50027, "JWT token is invalid or malformed.")
    if exp <= now or nbf - SKEW > now:
        raise InvalidGrant(
            500133,
            "Assertion is not within its valid time range. Ensure that the access token is not "
            "expired before using it for user assertion, or request a new token. Current time: "
            f"{iso(now)}, expiry time of assertion {iso(exp)}.",
        )
