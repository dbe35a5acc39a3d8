"""List, get, create and update for any declared `Domain`, against the Dataverse Web API.

Input is checked completely before the `Call` is used, so bad input never costs a token
exchange or a Dataverse request. Each operation is a conversation with Dataverse
(`shared.dataverse.call.Steps`): it yields its requests and is sent the answers, so the same
code serves sync and async functions (`shared.http.pipeline`). Dataverse's rows become the
API's own JSON here (`render`), and page tokens are the API's own: Dataverse's `$skiptoken`
sealed for this caller and this query (`shared.domains.paging`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import azure.functions as func

from shared.dataverse import query
from shared.dataverse.call import DataverseRequest, Steps
from shared.dataverse.errors import (
    BackendForbidden,
    BackendUnavailable,
    RecordAccessDenied,
    RecordNotFound,
)
from shared.domains import paging
from shared.domains.model import Choice, Domain, Field, Integer, Reference, check_text, parse_guid
from shared.http.errors import BadInput
from shared.http.pipeline import ApiRequest
from shared.http.responses import json_response

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_SEARCH_LENGTH = 100
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")  # fullmatch: `$` would allow a final "\n"
_ETAG = re.compile(r'(W/)?"[\x21\x23-\x7e]{1,64}"')
_PAGE_KEYS = frozenset({"pageSize", "pageToken"})
SERVER_FIELDS = frozenset({"id", "etag"})


def list_params(domain: Domain) -> frozenset[str]:
    search = {"q"} if domain.search else set()
    return frozenset({*_PAGE_KEYS, *search, *(f.param for f in domain.filters)})


def render(domain: Domain, row: Mapping[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"id": row.get(domain.key)}
    for f in domain.fields:
        record[f.name] = f.kind.render(row.get(f.column))
    record["etag"] = row.get("@odata.etag")
    return record


# --- list ---------------------------------------------------------------------------------


def _page_size(params: Mapping[str, str]) -> int:
    raw = params.get("pageSize")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadInput("pageSize", f"must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def _filter_literal(f: Field, raw: str, param: str) -> str:
    if isinstance(f.kind, Reference):
        return query.guid_literal(parse_guid(raw, param))
    if isinstance(f.kind, Choice):
        return str(f.kind.parse(raw, param))
    if isinstance(f.kind, Integer):
        if not raw.lstrip("-").isdigit() or not raw.isascii():
            raise BadInput(param, "must be an integer")
        return str(f.kind.parse(int(raw), param))
    return query.string_literal(f.kind.parse(raw, param))


def _clauses(domain: Domain, params: Mapping[str, str]) -> list[str]:
    clauses: list[str] = []
    if "q" in params:
        text = check_text(params["q"], "q", max_length=MAX_SEARCH_LENGTH)
        if not text.strip():
            raise BadInput("q", "must not be empty")
        columns = [domain.by_name[name].column for name in domain.search]
        clauses.append(query.any_of([query.contains(c, text) for c in columns]))
    for flt in domain.filters:
        if flt.param in params:
            f = domain.by_name[flt.field]
            clauses.append(query.eq(f.column, _filter_literal(f, params[flt.param], flt.param)))
    return clauses


def list_records(domain: Domain, request: ApiRequest) -> Steps[func.HttpResponse]:
    params = request.params
    size = _page_size(params)
    oq: list[tuple[str, str]] = [("$select", domain.select)]
    clauses = _clauses(domain, params)
    if clauses:
        oq.append(("$filter", query.all_of(clauses)))
    oq.append(("$orderby", ",".join(f"{c} asc" for c in (*domain.order_by, domain.key))))
    tokens = request.runtime.page_tokens
    bound = paging.binding(request.principal, domain.name, domain.entity_set, oq)
    if "pageToken" in params:
        oq.append(("$skiptoken", tokens.open(params["pageToken"], bound)))
    answer = yield DataverseRequest(
        "GET",
        domain.entity_set,
        query=query.encode(oq),
        headers={"Prefer": f"odata.maxpagesize={size}"},
    )
    body = answer.body or {}
    rows = body.get("value")
    if not isinstance(rows, list) or not all(_is_row(domain, row) for row in rows):
        raise BackendUnavailable("Dataverse answered a list without rows")
    skiptoken = paging.skiptoken(body.get("@odata.nextLink"))
    return json_response(
        200,
        {
            "items": [render(domain, row) for row in rows],
            "nextPageToken": tokens.seal(skiptoken, bound) if skiptoken else None,
        },
    )


# --- get, create, update ------------------------------------------------------------------


def _record_id(request: ApiRequest) -> str:
    return parse_guid(request.route_params.get("id", ""), "id")


def _is_row(domain: Domain, row: object) -> bool:
    return isinstance(row, dict) and isinstance(row.get(domain.key), str)


def _single(domain: Domain, status: int, row: Mapping[str, Any] | None) -> func.HttpResponse:
    if not _is_row(domain, row):
        raise BackendUnavailable("Dataverse answered without the record")
    assert row is not None
    record = render(domain, row)
    headers = {"ETag": record["etag"]} if record.get("etag") else {}
    if status == 201:
        headers["Location"] = f"/api/{domain.route}/{record['id']}"
    return json_response(status, record, headers=headers)


def get_record(domain: Domain, request: ApiRequest) -> Steps[func.HttpResponse]:
    """A record the caller may not read (`RecordAccessDenied`) answers 404, as a missing one."""
    key = _record_id(request)
    answer = yield DataverseRequest(
        "GET", f"{domain.entity_set}({key})", query=query.encode([("$select", domain.select)])
    )
    return _single(domain, 200, answer.body)


def _readable(domain: Domain, key: str) -> Steps[bool]:
    """Whether the caller may read the record (a missing one is not readable)."""
    try:
        yield DataverseRequest(
            "GET", f"{domain.entity_set}({key})", query=query.encode([("$select", domain.key)])
        )
    except (BackendForbidden, RecordNotFound):
        return False
    return True


def _changes(domain: Domain, body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for name, value in body.items():
        shown = name if _NAME.fullmatch(name) else "body"
        f = domain.by_name.get(name)
        if name in SERVER_FIELDS or (f is not None and not f.writable):
            raise BadInput(shown, "is read-only")
        if f is None:
            raise BadInput(shown, f"is not a field of {domain.resource}")
        if value is None:
            if f.required or not f.nullable:
                raise BadInput(name, "must not be null")
            parsed = None
        else:
            parsed = f.kind.parse(value, name)
        prop, dv_value = f.to_dataverse(parsed)
        payload[prop] = dv_value
    if creating:
        missing = [f.name for f in domain.fields if f.required and f.name not in body]
        if missing:
            raise BadInput(missing[0], "is required")
    elif not payload:
        raise BadInput("body", "must change at least one field")
    return payload


def create_record(domain: Domain, request: ApiRequest) -> Steps[func.HttpResponse]:
    body = request.json_body()
    payload = _changes(domain, body, creating=True)
    try:
        answer = yield DataverseRequest(
            "POST",
            domain.entity_set,
            query=query.encode([("$select", domain.select)]),
            body=payload,
            headers={"Prefer": "return=representation"},
        )
    except (RecordNotFound, RecordAccessDenied):
        # A referenced record the caller may not see is reported as missing, so that create
        # cannot be used to learn which ids exist either.
        refs = [f.name for f in domain.fields if isinstance(f.kind, Reference) and f.name in body]
        raise BadInput(
            refs[0] if len(refs) == 1 else "body", "refers to a record that does not exist"
        ) from None
    return _single(domain, 201, answer.body)


def update_record(domain: Domain, request: ApiRequest) -> Steps[func.HttpResponse]:
    """When Dataverse refuses the write for this record only (`RecordAccessDenied`), one read
    decides the answer: a record the caller cannot read is 404, as a missing one; a record they
    can read but not change is 403 `backend_forbidden`, which tells them nothing they could not
    read. Only a refused write costs that read."""
    key = _record_id(request)
    if_match = request.headers.get("if-match")
    if if_match is not None and if_match != "*" and not _ETAG.fullmatch(if_match):
        raise BadInput("If-Match", 'must be an etag from a previous read, like W/"123456"')
    body = request.json_body()
    payload = _changes(domain, body, creating=False)
    try:
        answer = yield DataverseRequest(
            "PATCH",
            f"{domain.entity_set}({key})",
            query=query.encode([("$select", domain.select)]),
            body=payload,
            # Without an etag, `*` still makes this update-only: PATCH never creates a record.
            headers={"Prefer": "return=representation", "If-Match": if_match or "*"},
        )
    except RecordAccessDenied as denied:
        if not (yield from _readable(domain, key)):
            raise
        raise BackendForbidden(
            "may read the record but not change it", status=403, error_code=denied.error_code
        ) from None
    return _single(domain, 200, answer.body)
