"""The Functions endpoint: `GET /api/openapi.json`, rendered once per tenant and client id."""

from __future__ import annotations

import json
from functools import lru_cache

import azure.functions as func

from shared.openapi.document import PLACEHOLDER_AUTHORITY, PLACEHOLDER_CLIENT_ID, document
from shared.settings import SettingsError, get_settings

bp = func.Blueprint()


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    authority, client_id = _tenant()
    return func.HttpResponse(
        _rendered(authority, client_id),
        status_code=200,
        mimetype="application/json",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def _tenant() -> tuple[str, str]:
    try:
        settings = get_settings()
    except SettingsError:
        return PLACEHOLDER_AUTHORITY, PLACEHOLDER_CLIENT_ID
    return settings.authority, settings.api_client_id


@lru_cache(maxsize=4)
def _rendered(authority: str, client_id: str) -> bytes:
    return json.dumps(document(authority=authority, client_id=client_id)).encode("utf-8")
