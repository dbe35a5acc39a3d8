"""Every relative link in README.md and docs/*.md resolves: the file exists in the repository
and the `#anchor`, if any, is a heading of the file it points at (GitHub's slugs).

Links to the web are not followed (no test reaches the internet). Links inside fenced code
blocks are code, not links. The set of files is found, not listed, so that a guide moved from
the README to docs/ is checked where it lands.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from devstack.config import ROOT

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_CODE_PATH = re.compile(r"`(\.{1,2}/[^`\s]+)`")  # a path written as code: `../x/y.md`
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text without code: fenced blocks and inline code spans."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces
    to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def relative_links(path: Path) -> list[str]:
    """Markdown links and references, and explicitly relative paths written as inline code."""
    raw = path.read_text(encoding="utf-8")
    text = _prose(raw)
    links = _LINK.findall(text) + _REFERENCE.findall(text) + _CODE_PATH.findall(_FENCE.sub("", raw))
    return [link for link in links if not _EXTERNAL.match(link)]


def broken(path: Path, link: str, root: Path = ROOT) -> str | None:
    """Why `link` in `path` does not resolve inside `root`, or None."""
    target, _, anchor = link.partition("#")
    file = (path.parent / target).resolve() if target else path.resolve()
    if not file.is_relative_to(root.resolve()):
        return f"{link}: outside the repository"
    if not file.exists():
        return f"{link}: no such file"
    if anchor and file.suffix == ".md" and anchor not in anchors(file):
        return f"{link}: no heading with that anchor in {file.name}"
    return None


@pytest.mark.parametrize("path", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    problems = [p for link in relative_links(path) if (p := broken(path, link))]
    assert not problems, problems


def test_the_checker_sees_links_and_anchors(tmp_path: Path) -> None:
    """The checker itself: a good link, a missing file, a missing anchor, code left alone."""
    (tmp_path / "other.md").write_text("# A heading: with `code`\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](other.md#a-heading-with-code) [gone](missing.md) [bad](other.md#nope)\n"
        "`[code](missing.md)`\n```\n[block](missing.md)\n```\n[web](https://example.com)\n"
        "`../outside.md` `./other.md`\n"
    )
    links = relative_links(doc)
    assert links == [
        "other.md#a-heading-with-code",
        "missing.md",
        "other.md#nope",
        "../outside.md",
        "./other.md",
    ]
    assert [bool(broken(doc, link, tmp_path)) for link in links] == [False, True, True, True, False]
