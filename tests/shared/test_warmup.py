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
