"""The repository is self-contained: no tracked file cites the briefing it was built from or a
tracker's issue numbers (the docs say what the suite implements in their own words), and every
relative link of the published pages resolves to a file of the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# spelt in pieces so that this file does not match itself
BRIEF = "SPE" + "CS"
CITATIONS = [
    (re.compile(rf"\b{BRIEF}\b(?!\s*(?:=|\[|,|\)))"), "the briefing's specification"),  # a Python name: no citation
    (re.compile(r"\bFIDEL" + r"ITY\b"), "the briefing's fidelity review"),
    (re.compile(r"\bissues?\s*#?\d+", re.I), "an issue number"),
]
SHARED = re.compile(r"\.\./" + "shared")
ARCHIVE_LOCATOR = {"bench/gpucheck.py"}  # finds the data archive beside the checkout; may name its path
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def tracked() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return [p for p in out if p and (ROOT / p).is_file()]


def text_of(path: str) -> str | None:
    try:
        return (ROOT / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary (figures)


def citations(path: str, text: str) -> list[str]:
    """``path:line: what`` for each citation of the briefing or of an issue number in ``text``."""
    found = []
    for i, line in enumerate(text.splitlines(), 1):
        for pattern, what in CITATIONS:
            if pattern.search(line):
                found.append(f"{path}:{i}: cites {what}: {line.strip()[:100]}")
        if SHARED.search(line) and path not in ARCHIVE_LOCATOR:
            found.append(f"{path}:{i}: names the briefing's folder: {line.strip()[:100]}")
    return found


def test_the_checker_knows_a_citation_when_it_sees_one():
    assert citations("x.md", f"as {BRIEF} section 2 says") and citations("x.py", "# (Iss" + "ue 15, item 6)")
    assert citations("x.md", "see iss" + "ue #7") and citations("x.md", "in FIDEL" + "ITY.md")
    assert citations("x.md", "../" + "shared/data") and not citations("bench/gpucheck.py", "../" + "shared/data")
    assert not citations("t.py", f"{BRIEF} = {{'TA': UP}}") and not citations("t.py", f"f(df, {BRIEF})")
    assert not citations("x.md", "metric_specs(); an issue with the data; /shared/cache")


def test_no_tracked_file_cites_the_briefing_or_an_issue_number():
    found = [c for p in tracked() if (t := text_of(p)) is not None for c in citations(p, t)]
    assert found == [], "\n".join(found)


def pages() -> list[Path]:
    out = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
    return out + sorted((ROOT / "results").glob("**/*.md"))


def broken_links(page: Path) -> list[str]:
    """Relative links and images of ``page`` whose file does not exist (anchors are not checked)."""
    out = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            out.append(target)
    return out


def test_the_link_checker_finds_a_broken_link(tmp_path):
    (tmp_path / "a.md").write_text("x")
    page = tmp_path / "p.md"
    page.write_text("[ok](a.md#top) ![img](missing.png) [web](https://x.org/y) [here](#s) [gone](b/c.md)")
    assert broken_links(page) == ["missing.png", "b/c.md"]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_front_page_stays_a_front_page():
    page = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    assert len(page.encode()) <= 30_000, "BENCHMARKS.md is a front page: move reference text to docs/"
    assert "<!-- summary:start -->" in page and "<!-- summary:end -->" in page
    lines = page.splitlines()
    sep = re.compile(r"\|(\s*:?-+:?\s*\|)+")
    widths = [lines[i - 1].count("|") - 1 for i, ln in enumerate(lines) if i and sep.fullmatch(ln)]
    assert max(widths, default=0) <= 8
