"""The names the document's parts share: security schemes and extensions."""

SUBSCRIPTION_SCHEME = "subscriptionKey"
OAUTH_SCHEME = "entraId"
EXTENSION_DELEGATED = "x-user-delegated"
EXTENSION_PERMISSIONS = "x-required-permissions"
