"""`POST $batch`: several operations in one `multipart/mixed` request, as Dataverse runs them.

Parts run in order, each through `operations.handle` as the batch's caller, so everything a
single request does (security, validation, conditional writes) applies. A change set (a nested
`multipart/mixed`) runs in one store transaction: if one of its operations fails, the ones before
it are rolled back and the change set answers that one error. `Content-ID: n` names a change-set
operation, and `$n` at the start of a later URL or as an `@odata.bind` value stands for the record
it created ("Content-ID Reference: '$n' does not exist in the batch context." otherwise). A GET
inside a change set is a 400, as is a nested `$batch` and more than 1000 operations.

Without `Prefer: odata.continue-on-error` the batch stops at the first failure and answers with
that failure's status (the parts so far in the body); with it, every part runs and the batch is
200. The multipart parsing is the standard library's `email` parser (HTTP policy).
"""

from __future__ import annotations

import email.policy
import json
import re
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from starlette.datastructures import Headers, QueryParams

from devstack.dataverse.errors import BadRequest, DataverseError
from devstack.dataverse.operations import Operation, handle
from devstack.dataverse.replies import Reply, encode, error_reply
from devstack.dataverse.security import Principal

if TYPE_CHECKING:
    from devstack.dataverse.app import Dataverse

MAX_OPERATIONS = 1000
API_PREFIX = "/api/data/v9.2"
_CRLF = "\r\n"
_REFERENCE = re.compile(r"\$([A-Za-z0-9_-]+)")
_SYSTEM_SEGMENTS = frozenset({"batch", "metadata"})  # `$batch`, `$metadata`: not references


@dataclass
class Part:
    raw: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    parts: list[Part] = field(default_factory=list)


@dataclass
class Answer:
    reply: Reply
    content_id: str | None = None


def execute(dv: Dataverse, principal: Principal, op: Operation) -> Reply:
    """Run a `$batch` request; the reply is the multipart response."""
    items = parse(op.headers.get("content-type", ""), op.body)
    continue_on_error = "odata.continue-on-error" in ",".join(op.headers.getlist("prefer"))
    answers: list[Answer | list[Answer]] = []
    status = 200
    for item in items:
        if isinstance(item, ChangeSet):
            result = _change_set(dv, principal, item)
        else:
            result = Answer(_run(dv, principal, item.raw, {}))
        answers.append(result)
        failed = isinstance(result, Answer) and result.reply.status >= 400
        if failed and not continue_on_error:
            assert isinstance(result, Answer)
            status = result.reply.status
            break
    boundary = f"batchresponse_{uuid.uuid4()}"
    return Reply(
        status,
        text=_render(answers, boundary),
        media_type=f"multipart/mixed; boundary={boundary}",
    )


# --- parsing -------------------------------------------------------------------------------------


def parse(content_type: str, body: bytes) -> list[Part | ChangeSet]:
    message = _multipart(content_type, body)
    items: list[Part | ChangeSet] = []
    count = 0
    for part in message.iter_parts():
        if part.get_content_type() == "multipart/mixed":
            change_set = ChangeSet([_part(p) for p in part.iter_parts()])
            count += len(change_set.parts)
            items.append(change_set)
        else:
            items.append(_part(part))
            count += 1
    if count > MAX_OPERATIONS:
        raise BadRequest(
            f"The batch contains {count} operations; a batch can contain at most {MAX_OPERATIONS}."
        )
    return items


def _multipart(content_type: str, body: bytes) -> EmailMessage:
    if not content_type.lower().startswith("multipart/mixed") or "boundary" not in content_type:
        raise BadRequest(
            "The content type of a $batch request must be 'multipart/mixed' with a boundary."
        )
    head = f"Content-Type: {content_type}{_CRLF}{_CRLF}".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert isinstance(message, EmailMessage)
    if not message.is_multipart() or not message.get_payload():
        raise BadRequest("The $batch request body is not a valid multipart/mixed message.")
    return message


def _part(part: Message) -> Part:
    if part.get_content_type() != "application/http":
        raise BadRequest(
            "Each part of a $batch request must have the content type application/http."
        )
    payload = part.get_payload(decode=True)
    raw = payload if isinstance(payload, bytes) else b""
    return Part(raw, part.get("Content-ID"))


def _operation(raw: bytes, references: dict[str, str]) -> Operation:
    """An operation from one part's HTTP request (`METHOD url HTTP/1.1`, headers, body)."""
    line, _, rest = raw.lstrip(b"\r\n").partition(b"\n")
    # `METHOD url HTTP/1.1`, the URL taken as everything between: the Python SDK sends
    # `$filter` values with raw spaces in it (README, "Microsoft's Python SDK")
    match = re.fullmatch(r"([A-Za-z]+) (.+) HTTP/\d\.\d", line.decode("utf-8", "replace").strip())
    if match is None:
        raise BadRequest("A $batch part does not start with a request line.")
    method, url = match.group(1).upper(), match.group(2).strip()
    head, body = _split_head(rest)
    headers = BytesHeaderParser(policy=email.policy.HTTP).parsebytes(head + b"\r\n\r\n")
    reference = _REFERENCE.match(url)
    if reference is not None and reference.group(1) not in _SYSTEM_SEGMENTS:
        target = references.get(reference.group(1))
        if target is None:
            raise BadRequest(
                f"Content-ID Reference: '{reference.group(0)}' does not exist in the batch context."
            )
        url = target + url[reference.end() :]
    parts = urlsplit(url)
    path = unquote(parts.path)
    if API_PREFIX in path:
        path = path.split(API_PREFIX, 1)[1]
    return Operation(
        method=method,
        path=path.lstrip("/"),
        params=QueryParams(parts.query).multi_items(),
        headers=Headers(headers={k: str(v) for k, v in headers.items()}),
        body=_bind_references(body.rstrip(b"\r\n"), references),
    )


def _split_head(rest: bytes) -> tuple[bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", rest)
    if match is None:
        return rest, b""
    return rest[: match.start()], rest[match.end() :]


def _bind_references(body: bytes, references: dict[str, str]) -> bytes:
    """`"x@odata.bind": "$1"` -> the URL of the record change-set operation 1 created."""
    if b"$" not in body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    for key, value in data.items():
        if key.endswith("@odata.bind") and isinstance(value, str) and value.startswith("$"):
            target = references.get(value[1:])
            if target is None:
                raise BadRequest(
                    f"Content-ID Reference: '{value}' does not exist in the batch context."
                )
            data[key] = target
    return json.dumps(data).encode()


# --- running -------------------------------------------------------------------------------------


def _run(
    dv: Dataverse,
    principal: Principal,
    raw: bytes,
    references: dict[str, str],
    *,
    in_change_set: bool = False,
) -> Reply:
    try:
        op = _operation(raw, references)
        if in_change_set and op.method == "GET":
            raise BadRequest("GET requests are not allowed within a change set.")
        return handle(dv, principal, op)
    except DataverseError as exc:
        return error_reply(exc)


class _RolledBack(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__("change set rolled back")
        self.answer = answer


def _change_set(
    dv: Dataverse, principal: Principal, change_set: ChangeSet
) -> Answer | list[Answer]:
    """Every operation's answer, or the one failure after the whole change set rolled back."""
    references: dict[str, str] = {}
    answers: list[Answer] = []
    try:
        with dv.store.transaction():
            for part in change_set.parts:
                reply = _run(dv, principal, part.raw, references, in_change_set=True)
                answer = Answer(reply, part.content_id)
                if reply.status >= 400:
                    raise _RolledBack(answer)
                entity_id = reply.headers.get("OData-EntityId")
                if part.content_id is not None and entity_id:
                    references[part.content_id] = entity_id
                answers.append(answer)
    except _RolledBack as rolled_back:
        return rolled_back.answer
    return answers


# --- rendering -----------------------------------------------------------------------------------


def _render(answers: list[Answer | list[Answer]], boundary: str) -> str:
    out: list[str] = []
    for item in answers:
        out.append(f"--{boundary}{_CRLF}")
        if isinstance(item, list):
            inner = f"changesetresponse_{uuid.uuid4()}"
            out.append(f"Content-Type: multipart/mixed; boundary={inner}{_CRLF}{_CRLF}")
            for answer in item:
                out.append(f"--{inner}{_CRLF}{_http_part(answer)}")
            out.append(f"--{inner}--{_CRLF}")
        else:
            out.append(_http_part(item))
    out.append(f"--{boundary}--{_CRLF}")
    return "".join(out)


def _http_part(answer: Answer) -> str:
    head = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if answer.content_id is not None:
        head.append(f"Content-ID: {answer.content_id}")
    headers, body = encode(answer.reply)
    status = answer.reply.status
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    text = body.decode("utf-8") if body else ""
    return _CRLF.join(head) + _CRLF + _CRLF + _CRLF.join(lines) + _CRLF + _CRLF + text + _CRLF


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
