"""Client authentication at the token endpoint: who is asking, and how they proved it.

Confidential clients prove themselves with a secret (`client_secret` in the body or HTTP Basic),
a certificate (`client_assertion`, RFC 7523: RS256 + `x5t`, or PS256 + `x5t#S256`, issued by the
app itself) or a federated credential (`client_assertion` issued by another issuer, such as the
app's managed identity, matched against the app's FICs: devstack/entra/federated.py). Public
clients present nothing, and must not. `Client.method` says which, for the request log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.entra.directory import Directory
from devstack.entra.errors import InvalidClient, InvalidRequest, UnauthorizedClient
from devstack.entra.federated import check_federated_assertion, is_federated
from devstack.entra.keys import KeyRing
from devstack.entra.metadata import Urls
from devstack.entra.signature import signed_claims
from devstack.entra.timefmt import iso, numeric_date
from devstack.entra.tokens import ACR_CERTIFICATE, ACR_PUBLIC, ACR_SECRET
from devstack.pki import Material, load_client_cert, thumbprints
from devstack.tenant import App

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_CERT_DOCS = (
    "Review the documentation at "
    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
)
# Entra tolerates some clock skew on client assertions.
SKEW = 300


@dataclass(frozen=True)
class Client:
    app: App
    acr: str  # "0" public, "1" secret, "2" certificate or federated credential
    method: str = "none"  # how it authenticated: "none", "secret", "certificate", "federated"

    @property
    def confidential(self) -> bool:
        return self.acr != ACR_PUBLIC


@dataclass(frozen=True)
class Credentials:
    """What the request presented, before checking."""

    client_id: str | None
    secret: str | None
    assertion_type: str | None
    assertion: str | None

    @classmethod
    def from_request(cls, form: dict[str, str], basic: tuple[str, str] | None) -> Credentials:
        client_id = form.get("client_id") or (basic[0] if basic else None)
        secret = form.get("client_secret")
        if secret is None and basic is not None:
            secret = basic[1] if basic[0] == client_id else ""  # another app's secret: no match
        return cls(
            client_id, secret, form.get("client_assertion_type"), form.get("client_assertion")
        )


@dataclass(frozen=True)
class _Certificate:
    public_key: rsa.RSAPublicKey
    x5t: str
    x5t_s256: str


class ClientAuthenticator:
    def __init__(
        self, directory: Directory, material: Material, *, keys: KeyRing, urls: Urls
    ) -> None:
        self._directory = directory
        self._keys = keys
        self._urls = urls
        self._secrets = {
            app: material.client_secret(app) for app in material.secrets.get("client_secrets", {})
        }
        self._certs: dict[str, _Certificate] = {}
        for app, path in material.client_certs.items():
            _, cert = load_client_cert(path)
            public_key = cert.public_key()
            assert isinstance(public_key, rsa.RSAPublicKey)
            sha1, sha256 = thumbprints(cert)
            self._certs[app] = _Certificate(public_key, sha1, sha256)

    def authenticate(self, creds: Credentials, token_urls: set[str], now: float) -> Client:
        client_id = creds.client_id or _assertion_issuer(creds.assertion)
        if not client_id:
            raise InvalidRequest(
                900144, "The request body must contain the following parameter: 'client_id'."
            )
        app = self._directory.app_by_client_id(client_id.strip().lower())
        if app is None:
            raise UnauthorizedClient(
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self._directory.tenant.name}'. This can happen if the application has not "
                "been installed by the administrator of the tenant or consented to by any user "
                "in the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        presented = creds.secret is not None or creds.assertion is not None
        if not app.confidential:
            if presented:
                raise InvalidClient(
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' should "
                    "be presented.",
                )
            return Client(app, ACR_PUBLIC)
        if creds.assertion is not None or creds.assertion_type is not None:
            if creds.secret is not None:
                raise InvalidClient(
                    7000218,
                    "Only one client credential may be presented: 'client_assertion' or "
                    "'client_secret'.",
                )
            if creds.assertion and is_federated(_unverified(creds.assertion), app):
                if creds.assertion_type != ASSERTION_TYPE:
                    raise InvalidRequest(
                        900144,
                        "The request body must contain the following parameter: "
                        "'client_assertion_type'.",
                    )
                check_federated_assertion(
                    app,
                    creds.assertion,
                    _unverified(creds.assertion),
                    directory=self._directory,
                    keys=self._keys,
                    urls=self._urls,
                    now=now,
                )
                return Client(app, ACR_CERTIFICATE, "federated")
            self._check_assertion(app, creds, token_urls, now)
            return Client(app, ACR_CERTIFICATE, "certificate")
        if creds.secret is None:
            raise InvalidClient(
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        expected = self._secrets.get(app.name, "")
        if not expected or not hmac.compare_digest(creds.secret.encode(), expected.encode()):
            raise InvalidClient(
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        return Client(app, ACR_SECRET, "secret")

    # --- private_key_jwt ----------------------------------------------------------------------

    def _check_assertion(
        self, app: App, creds: Credentials, token_urls: set[str], now: float
    ) -> None:
        if creds.assertion_type != ASSERTION_TYPE:
            raise InvalidRequest(
                900144,
                "The request body must contain the following parameter: 'client_assertion_type'.",
            )
        if not creds.assertion:
            raise InvalidRequest(
                900144, "The request body must contain the following parameter: 'client_assertion'."
            )
        header = _header(creds.assertion)
        alg = header.get("alg")
        registered = self._certs.get(app.name)
        if alg == "RS256":
            thumbprint, expected = header.get("x5t"), registered.x5t if registered else None
        elif alg == "PS256":
            thumbprint, expected = (
                header.get("x5t#S256"),
                registered.x5t_s256 if registered else None,
            )
        else:
            raise InvalidClient(
                5002738, f"Invalid JWT token. '{alg}' is not a supported signature algorithm."
            )
        if (
            not isinstance(thumbprint, str)
            or registered is None
            or expected is None
            or (thumbprint.rstrip("=") != expected)
        ):
            raise InvalidClient(
                700027,
                "Client assertion failed signature validation. [Reason - The key was not found., "
                f"Thumbprint of key used by client: '{_hex(thumbprint)}', Please visit the Azure "
                "Portal, Graph Explorer or directly use MS Graph to see configured keys for app "
                f"Id '{app.client_id}'. {_CERT_DOCS}]",
            )
        try:
            claims = signed_claims(creds.assertion, registered.public_key, alg)
        except jwt.InvalidSignatureError:
            raise InvalidClient(
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature "
                "value did not match the expected signature value., Thumbprint of key used by "
                f"client: '{_hex(thumbprint)}'. {_CERT_DOCS}]",
            ) from None
        except jwt.PyJWTError:
            raise _malformed() from None
        self._check_assertion_claims(app, claims, token_urls, now)

    def _check_assertion_claims(
        self, app: App, claims: dict[str, Any], token_urls: set[str], now: float
    ) -> None:
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise _malformed()
        if not all(isinstance(claims.get(c), str) for c in ("iss", "sub", "jti")):
            raise _malformed()
        if claims["iss"].lower() != app.client_id or claims["sub"].lower() != app.client_id:
            raise InvalidClient(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        accepted = {u.lower() for u in token_urls}
        if not any(a.rstrip("/").lower() in accepted for a in audiences):
            raise InvalidClient(
                50012,
                "Client assertion audience claim does not match Realm issuer. Audience "
                f"'{' '.join(audiences)}' is not valid.",
            )
        exp, nbf = numeric_date(claims.get("exp")), numeric_date(claims.get("nbf", 0))
        if exp is None or nbf is None:
            raise _malformed()
        if exp + SKEW < now or nbf - SKEW > now:
            raise InvalidClient(
                700024,
                f"Client assertion is not within its valid time range. Current time: {iso(now)}, "
                f"assertion valid from {iso(nbf)}, expiry time of assertion {iso(exp)}. "
                f"{_CERT_DOCS}",
            )


def _header(assertion: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise _malformed() from None


def _unverified(assertion: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _malformed() from None
    return claims


def _assertion_issuer(assertion: str | None) -> str | None:
    """Entra takes the client id from the assertion when the body names none."""
    if not assertion:
        return None
    issuer = _unverified(assertion).get("iss")
    return issuer if isinstance(issuer, str) else None


def _malformed() -> InvalidClient:
    return InvalidClient(50027, "JWT token is invalid or malformed.")


def _hex(thumbprint: object) -> str:
    if not isinstance(thumbprint, str):
        return ""
    try:
        raw = base64.urlsafe_b64decode(thumbprint + "=" * (-len(thumbprint) % 4))
    except (binascii.Error, ValueError):
        return ""
    return raw.hex().upper()
