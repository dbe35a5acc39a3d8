"""Which client applications may call: checked right after the token, before the endpoint's
policy.

A token names the app that obtained it (`azp` in v2 tokens, `appid` in v1; the Principal's
`client_app_id`). Scopes and app roles already say what an app was granted, but any app of the
tenant can be granted them (or, for delegated scopes, have users consent), so two optional
settings narrow it further:

- `ALLOWED_CLIENT_APP_IDS`: only these apps may call at all. Empty: any app of the tenant.
- `SUBSCRIPTION_CLIENT_APP_IDS`: a bound subscription accepts only tokens from its apps, so a
  leaked subscription key is useless with another app's token. Unbound subscriptions accept any
  allowed app.

Either refusal is `ClientAppNotAllowed` (403 `client_app_not_allowed`); the answer names no id.
Ids are compared in lower case, as settings normalise them.
"""

from __future__ import annotations

from shared.auth.errors import ClientAppNotAllowed
from shared.settings import Settings


def check_client_app(client_app_id: str, subscription: str, settings: Settings) -> None:
    """Raise ClientAppNotAllowed unless `client_app_id` may call with `subscription`'s key."""
    app = client_app_id.lower()
    allowed = settings.allowed_client_app_ids
    if allowed and app not in allowed:
        raise ClientAppNotAllowed
    bound = settings.subscription_client_app_ids.get(subscription)
    if bound is not None and app not in bound:
        raise ClientAppNotAllowed(subscription_bound=True)
