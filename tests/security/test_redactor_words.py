"""The redactor tries each of its patterns only on text holding one of the words the pattern
cannot match without (`shared.telemetry._PATTERNS`): it runs on every log record, one per request
and one per request refused by the per-caller cap, so it must be cheap. These tests hold that
short cut to scrubbing exactly what every pattern tried on every text would scrub, in particular
where case-insensitive matching reaches beyond ASCII (U+017F, the long s, matches "s" under
`(?i)`; U+212A, the Kelvin sign, matches "k"), where a test on `text.lower()` would miss it."""

from __future__ import annotations

import pytest

from shared import telemetry
from shared.telemetry import Redactor

TEXTS = [
    "method=GET route=customers/{id} status=429 code=too_many_concurrent_requests mode=user",
    "Authorization: Bearer abc.def-ghi",
    "authorization=BASIC dXNlcjpwYXNz",
    "BEARER abcdef",
    "Ba\u017fic dXNlcjpwYXNz",  # the long s
    "be\u017frer? no: bearer\u00e9 tok",
    "client_\u017fecret=hunter22",
    "subscription-\u212aey: abcdefgh",  # the Kelvin sign
    "OCP-APIM-SUBSCRIPTION-KEY: 0123456789",
    'x {"access_token": "abc", "Password": "p"}',
    "PASSWORD=letmein",
    "see https://org.example/api?$filter=name eq 'x'",
    "mail a.b@example.com or eyJhbGciOi.eyJzdWIi.sig",
    "eyJhbGciOiJSUzI1NiJ9 alone",
    "plain words, no secrets?",
    "",
]


def every_pattern_everywhere(text: str) -> str:
    for _, _, pattern, replacement in telemetry._PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@pytest.mark.parametrize("text", TEXTS)
def test_the_short_cut_scrubs_what_every_pattern_would(text: str) -> None:
    assert Redactor().scrub(text) == every_pattern_everywhere(text)


def test_case_insensitive_words_outside_ascii_are_still_scrubbed() -> None:
    redactor = Redactor()
    assert "dXNlcjpwYXNz" not in redactor.scrub("Ba\u017fic dXNlcjpwYXNz")
    assert "hunter22" not in redactor.scrub("client_\u017fecret=hunter22")
    assert "abcdefgh" not in redactor.scrub("subscription-\u212aey: abcdefgh")
