"""P11's reference: the function app without the start-up warm-up (shared/warmup.py), so that
a fresh instance's first request fetches keys and MSAL's discovery itself, in series, as every
first request did before the warm-up. Marking the warm-up as started before `function_app` is
imported is all it takes; nothing else differs. Never part of the deployed app."""

from shared import warmup

warmup._started.set()

from function_app import app  # noqa: E402 - after the mark above, on purpose

__all__ = ["app"]
