"""A FunctionApp that counts how many of its calls run at once, for
tests/devstack/test_host_worker.py (served with the host.json beside it: prefix `svc/v1`).

`hold/sync` and `hold/async` each take a place in `meter` and keep it until the test sets
`meter.release`; the test reads `meter` in process, since a request asking for it would queue
behind the held ones like any other.
"""

from __future__ import annotations

import asyncio
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

HOLD_LIMIT_SECONDS = 30.0  # a held call gives up by itself if a test never releases it


class Meter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.release = threading.Event()
        self.running = 0
        self.peak = 0

    def reset(self) -> None:
        with self._lock:
            self.running = self.peak = 0
            self.release.clear()

    def enter(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        with self._lock:
            self.running -= 1


meter = Meter()


@app.route(route="hold/sync")
def hold_sync(req: func.HttpRequest) -> func.HttpResponse:
    meter.enter()
    try:
        meter.release.wait(HOLD_LIMIT_SECONDS)
    finally:
        meter.leave()
    return func.HttpResponse("held")


@app.route(route="hold/async")
async def hold_async(req: func.HttpRequest) -> func.HttpResponse:
    meter.enter()
    try:
        for _ in range(int(HOLD_LIMIT_SECONDS * 100)):
            if meter.release.is_set():
                break
            await asyncio.sleep(0.01)
    finally:
        meter.leave()
    return func.HttpResponse("held")
