"""The start-up warm-up in process: where there are no settings (tooling importing the app,
`make bench`'s P5) it does nothing and raises nothing; the first request reports the settings."""

from __future__ import annotations

import pytest

from shared import runtime, warmup


def test_without_settings_the_warm_up_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.reset()
    monkeypatch.delenv("AZURE_TENANT_ID", raising=False)
    try:
        warmup.warm()
        assert runtime._current is None
    finally:
        runtime.reset()


def test_an_unexpected_failure_in_a_step_is_logged_and_goes_no_further(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def closed_under_it() -> None:  # e.g. the store closed under the ping by runtime.reset()
        raise AttributeError("'NoneType' object has no attribute 'readline'")

    with caplog.at_level("WARNING", logger="central_api.warmup"):
        warmup._guarded("store", closed_under_it)
    assert [r.getMessage() for r in caplog.records] == ["warm-up step store failed: AttributeError"]


def test_wait_returns_once_the_warm_up_thread_has_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()
    monkeypatch.setattr(warmup, "_started", threading.Event())
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "warm", lambda: release.wait(10))
    thread = warmup.start()
    assert thread is not None
    assert warmup.start() is None  # once per process
    assert not warmup.wait(0.05)  # still running
    release.set()
    assert warmup.wait(10)
    assert not thread.is_alive()
