"""The client guide's errors tables (docs/clients.md) list every code a client can get, with its
status: the codes and statuses come from the error classes and `MAPPINGS`, so a new error class
fails here until the guide documents it."""

from __future__ import annotations

import inspect
import re

import pytest

from devstack.config import ROOT
from shared.http.responses import MAPPINGS
from tests.shared.test_error_mapping import EXPECTED, MODULES

# Base classes that are never raised themselves: they have a mapping only so that a subclass
# without one could not fall back to a wrong status (tests/shared/test_error_mapping.py).
NEVER_RAISED = frozenset({"AuthError", "SubscriptionKeyError", "Forbidden"})
_ROW = re.compile(r"^\| (\d{3}) \| `([a-z_]+)` \|", re.MULTILINE)


def _documented() -> set[tuple[int, str]]:
    text = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    return {(int(status), code) for status, code in _ROW.findall(text)}


def _classes() -> list[type[Exception]]:
    found = [
        cls
        for module in MODULES
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__ == module.__name__
    ]
    return [cls for cls in found if cls in MAPPINGS and cls.__name__ not in NEVER_RAISED]


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: cls.__name__)
def test_every_error_code_is_in_the_readme_errors_table(cls: type[Exception]) -> None:
    code = cls.code
    assert (EXPECTED[cls.__name__], code) in _documented(), (
        f"docs/clients.md's errors tables have no row | {EXPECTED[cls.__name__]} | `{code}` |"
    )
