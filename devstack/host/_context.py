"""The `context` argument a function may declare, as the Python worker fills it in.

The trace context continues the caller's W3C `traceparent` (same trace id, a new span id) or
starts a new trace; `tracestate` is passed on. There are no retries for HTTP triggers, so the
retry context is all zeros.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})")
_thread_local = threading.local()


@dataclass(frozen=True)
class TraceContext:
    trace_parent: str
    trace_state: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryContext:
    retry_count: int = 0
    max_retry_count: int = 0
    exception: Any = None


class InvocationContext(func.Context):
    def __init__(
        self,
        *,
        invocation_id: str,
        function_name: str,
        function_directory: str,
        trace_context: TraceContext,
    ) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace_context = trace_context

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        # The worker passes a threading.local instance despite the `Type[...]` annotation.
        return _thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return self._trace_context

    @property
    def retry_context(self) -> Any:
        return RetryContext()


def new_context(
    function_name: str, directory: str, headers: Mapping[str, str]
) -> InvocationContext:
    parent = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    trace_id = parent[1] if parent and parent[1] != "0" * 32 else secrets.token_hex(16)
    flags = parent[2] if parent else "00"
    return InvocationContext(
        invocation_id=str(uuid.uuid4()),
        function_name=function_name,
        function_directory=directory,
        trace_context=TraceContext(
            trace_parent=f"00-{trace_id}-{secrets.token_hex(8)}-{flags}",
            trace_state=headers.get("tracestate", ""),
        ),
    )


def bind_thread(context: InvocationContext) -> None:
    """What the worker does before running a sync function: user threads can find the id."""
    _thread_local.invocation_id = context.invocation_id
