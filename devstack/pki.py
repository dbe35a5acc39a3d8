"""Key material for the dev stack, generated at run time and never committed.

`ensure_material(folder, tenant)` creates, once, into a git-ignored folder:

- `ca.pem` / `ca-key.pem`: a local certificate authority; clients trust `ca.pem` as their CA bundle.
- `tls.pem` / `tls-key.pem`: a server certificate for localhost, 127.0.0.1 and ::1, CA-signed.
- `signing-keys.json`: the Entra emulator's RSA token-signing keys (two to start with), each with a
  self-signed certificate for the JWKS `x5c`/`x5t`, the first one active.
- `client-certs/<app>.pem`: a certificate credential (key + certificate) for each confidential app.
- `secrets.json`: client secrets for confidential apps, user passwords, the API's
  subscription keys and its data key (`API_DATA_KEY`, 32 random bytes in base64).

Everything is re-used on later runs so that tokens issued before a restart stay valid.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devstack.tenant import Tenant

_ONE_DAY = dt.timedelta(days=1)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _common_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _cert_builder(
    key: rsa.RSAPrivateKey, subject: x509.Name, issuer: x509.Name, days: int
) -> x509.CertificateBuilder:
    """A builder for a certificate of `key`'s public half, valid from a day ago for `days` days;
    extensions and the signature are the caller's."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _ONE_DAY)
        .not_valid_after(_now() + dt.timedelta(days=days))
    )


def self_signed_cert(key: rsa.RSAPrivateKey, common_name: str, days: int = 365) -> x509.Certificate:
    name = _common_name(common_name)
    return _cert_builder(key, name, name, days).sign(key, hashes.SHA256())


def thumbprints(cert: x509.Certificate) -> tuple[str, str]:
    """(x5t, x5t#S256): base64url SHA-1 and SHA-256 of the DER certificate."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der).digest()), b64url(hashlib.sha256(der).digest())  # noqa: S324


@dataclass
class SigningKey:
    """One token-signing key as Entra publishes it: RSA key, certificate, `kid` and `x5t`."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def x5t(self) -> str:
        return thumbprints(self.cert)[0]

    @property
    def kid(self) -> str:
        # Entra's v2 keys use the certificate's SHA-1 thumbprint as both kid and x5t.
        return self.x5t

    def jwk(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.x5t,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }

    def private_pem(self) -> bytes:
        return key_pem(self.key)

    def to_json(self) -> dict[str, str]:
        return {"key": key_pem(self.key).decode(), "cert": cert_pem(self.cert).decode()}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> SigningKey:
        key = serialization.load_pem_private_key(data["key"].encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return cls(key=key, cert=x509.load_pem_x509_certificate(data["cert"].encode()))

    @classmethod
    def generate(cls) -> SigningKey:
        key = new_rsa_key()
        return cls(key=key, cert=self_signed_cert(key, "accounts.devstack.localhost"))


@dataclass(frozen=True)
class Material:
    """Paths and secrets produced by `ensure_material`."""

    folder: Path
    ca_cert: Path
    tls_cert: Path
    tls_key: Path
    signing_keys: Path
    client_certs: dict[str, Path]
    secrets: dict[str, Any]

    def client_secret(self, app: str) -> str:
        return str(self.secrets["client_secrets"][app])

    def password(self, user: str) -> str:
        return str(self.secrets["passwords"][user])

    @property
    def subscription_keys(self) -> dict[str, list[str]]:
        return dict(self.secrets["subscription_keys"])

    @property
    def api_data_key(self) -> str:
        return str(self.secrets["api_data_key"])

    def load_signing_keys(self) -> list[SigningKey]:
        return [SigningKey.from_json(k) for k in json.loads(self.signing_keys.read_text())]


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _make_ca(folder: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = new_rsa_key()
    name = _common_name("central-api dev stack local CA")
    cert = (
        _cert_builder(key, name, name, days=3650)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(folder / "ca-key.pem", key_pem(key))
    (folder / "ca.pem").write_bytes(cert_pem(cert))
    return key, cert


def _make_tls(folder: Path, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate) -> None:
    key = new_rsa_key()
    cert = (
        _cert_builder(key, _common_name("localhost"), ca_cert.subject, days=825)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(folder / "tls-key.pem", key_pem(key))
    (folder / "tls.pem").write_bytes(cert_pem(cert))


def _token() -> str:
    return secrets.token_urlsafe(30)


def ensure_material(folder: Path, tenant: Tenant) -> Material:
    """Create whatever is missing under `folder`; return where everything is."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "ca.pem").exists() or not (folder / "ca-key.pem").exists():
        ca_key, ca_cert = _make_ca(folder)
        _make_tls(folder, ca_key, ca_cert)
    elif not (folder / "tls.pem").exists():
        loaded = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        _make_tls(folder, loaded, x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes()))

    keys_file = folder / "signing-keys.json"
    if not keys_file.exists():
        keys = [SigningKey.generate(), SigningKey.generate()]
        _write_private(keys_file, json.dumps([k.to_json() for k in keys]).encode())

    confidential = sorted(a.name for a in tenant.apps.values() if a.confidential)
    certs_dir = folder / "client-certs"
    certs_dir.mkdir(exist_ok=True)
    client_certs: dict[str, Path] = {}
    for app in confidential:
        path = certs_dir / f"{app}.pem"
        if not path.exists():
            key = new_rsa_key()
            cert = self_signed_cert(key, f"{app}.{tenant.domain}")
            _write_private(path, key_pem(key) + cert_pem(cert))
        client_certs[app] = path

    secrets_file = folder / "secrets.json"
    data: dict[str, Any] = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    changed = not secrets_file.exists()
    for section, names in (("client_secrets", confidential), ("passwords", sorted(tenant.users))):
        bucket = data.setdefault(section, {})
        for name in names:
            if name not in bucket:
                bucket[name] = _token()
                changed = True
    if "subscription_keys" not in data:
        # Two keys per subscription, as API Management issues them, so rotation can be shown.
        data["subscription_keys"] = {
            "demo-portal": [_token(), _token()],
            "demo-dealer": [_token(), _token()],
        }
        changed = True
    if "api_data_key" not in data:
        # Kept across runs, as every secret here is, so page tokens survive a restart.
        data["api_data_key"] = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        # Compatibility: a secrets.json from before the rename holds the old "page_token_key".
        # Tokens sealed under it would not open under the new key's derived subkey anyway, so
        # it is dropped rather than reused, and the file holds no secret nothing reads.
        data.pop("page_token_key", None)
        changed = True
    if changed:
        _write_private(secrets_file, json.dumps(data, indent=2).encode())

    return Material(
        folder=folder,
        ca_cert=folder / "ca.pem",
        tls_cert=folder / "tls.pem",
        tls_key=folder / "tls-key.pem",
        signing_keys=keys_file,
        client_certs=client_certs,
        secrets=data,
    )


def load_client_cert(path: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    data = path.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(data)
