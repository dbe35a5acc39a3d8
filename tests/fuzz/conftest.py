"""Fixtures for the fuzz tests: `api` and `faults` of tests/api/conftest.py."""

from tests.api.conftest import api, faults  # noqa: F401 - fixtures used in this folder
