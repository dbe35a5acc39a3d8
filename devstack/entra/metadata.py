"""Discovery documents and the user-realm answer, shaped like Entra's own.

The v2 document is what MSAL and azure-identity read; the v1 one is what v1-token validators
(`https://sts.windows.net/{tid}/` issuers) read. Both point at the same keys.
"""

from __future__ import annotations

from typing import Any

from devstack.entra.directory import MULTI_TENANT_ALIASES
from devstack.tenant import Tenant

CLOUD_INSTANCE_NAME = "microsoftonline.com"
TENANT_REGION_SCOPE = "EU"
CLAIMS_V2 = [
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
]
CLAIMS_V1 = [
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "amr",
    "nonce",
    "email",
    "given_name",
    "family_name",
    "nickname",
]
_SHARED: dict[str, Any] = {
    "token_endpoint_auth_methods_supported": [
        "client_secret_post",
        "private_key_jwt",
        "client_secret_basic",
    ],
    "response_modes_supported": ["query", "fragment", "form_post"],
    "subject_types_supported": ["pairwise"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "http_logout_supported": True,
    "frontchannel_logout_supported": True,
    "tenant_region_scope": TENANT_REGION_SCOPE,
    "cloud_instance_name": CLOUD_INSTANCE_NAME,
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}


class Urls:
    """Every URL the emulator hands out, built from its base URL and the tenant id."""

    def __init__(self, base_url: str, tenant_id: str) -> None:
        self.base = base_url.rstrip("/")
        self.tenant_id = tenant_id

    def issuer(self, version: int) -> str:
        return (
            f"{self.base}/{self.tenant_id}/v2.0"
            if version == 2
            else f"{self.base}/{self.tenant_id}/"
        )

    def token_endpoint(self, version: int, tenant: str | None = None) -> str:
        path = "oauth2/v2.0/token" if version == 2 else "oauth2/token"
        return f"{self.base}/{tenant or self.tenant_id}/{path}"

    def token_endpoints(self) -> set[str]:
        """Every form of token URL a client assertion's `aud` may name."""
        tenants = (self.tenant_id, *MULTI_TENANT_ALIASES)
        return {self.token_endpoint(v, t) for v in (1, 2) for t in tenants}

    def error_uri(self, code: int) -> str:
        return f"{self.base}/error?code={code}"


def openid_configuration(urls: Urls, segment: str, version: int) -> dict[str, Any]:
    """The discovery document for the tenant as addressed (`segment` already checked).

    A tenant-specific document names the tenant GUID everywhere; `common`/`organizations` keep
    the alias in the endpoints and put Entra's `{tenantid}` placeholder in the issuer.
    """
    alias = segment in MULTI_TENANT_ALIASES
    tid = segment if alias else urls.tenant_id
    root = f"{urls.base}/{tid}"
    issuer = urls.issuer(version)
    if alias:
        issuer = issuer.replace(urls.tenant_id, "{tenantid}")
    if version == 2:
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "kerberos_endpoint": f"{root}/kerberos",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": CLAIMS_V2,
            **_SHARED,
        }
    return {
        "token_endpoint": f"{root}/oauth2/token",
        "jwks_uri": f"{root}/discovery/keys",
        "issuer": issuer,
        "microsoft_multi_refresh_token": True,
        "authorization_endpoint": f"{root}/oauth2/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/devicecode",
        "end_session_endpoint": f"{root}/oauth2/logout",
        "check_session_iframe": f"{root}/oauth2/checksession",
        "userinfo_endpoint": f"{root}/openid/userinfo",
        "kerberos_endpoint": f"{root}/kerberos",
        "response_types_supported": [
            "code",
            "id_token",
            "code id_token",
            "token id_token",
            "token",
        ],
        "scopes_supported": ["openid"],
        "claims_supported": CLAIMS_V1,
        **_SHARED,
    }


def user_realm(tenant: Tenant, username: str) -> dict[str, Any]:
    """`/common/userrealm/{username}`: Managed for this tenant's domain, Unknown otherwise."""
    _, _, domain = username.rpartition("@")
    if domain.lower() != tenant.domain.lower():
        return {"ver": "1.0", "account_type": "Unknown", "cloud_instance_name": CLOUD_INSTANCE_NAME}
    return {
        "ver": "1.0",
        "account_type": "Managed",
        "domain_name": tenant.domain,
        "cloud_instance_name": CLOUD_INSTANCE_NAME,
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }
