"""Placeholder until the async handlers land: the app as it is."""

from function_app import app

__all__ = ["app"]
