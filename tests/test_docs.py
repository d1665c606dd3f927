"""The README is a page and the docs hold together: every relative link resolves (the file exists, an ``#anchor``
names a heading of the target as GitHub slugs it), the README stays short, and its test set-up is what CI runs."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 350

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a code block is no heading, ``[x](y)`` no link)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lowercased, everything but letters, digits, marks, spaces,
    hyphens and underscores removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link or image: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    kept = (c for c in text if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in ``path``; a repeated slug gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image in ``path`` that is not an external URL."""
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced = False
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = CODE_SPAN.sub("", line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        if m := REFERENCE_DEF.match(line):
            targets.append(m.group(1))
        out += [(number, t) for t in targets if not EXTERNAL.match(t)]
    return out


def broken_link(page: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``page``) does not resolve, or None."""
    file_part, _, anchor = target.partition("#")
    dest = (page.parent / unquote(file_part)).resolve() if file_part else page
    shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
    if not dest.exists():
        return f"{shown} does not exist"
    if anchor and (dest.suffix != ".md" or unquote(anchor) not in anchors(dest)):
        return f"{shown} has no heading with the anchor #{anchor}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = [f"line {n}: ({t}) {why}" for n, t in relative_links(page) if (why := broken_link(page, t))]
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_readme_is_a_page():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move details to docs/ (at most {README_MAX_LINES})"


def code_block_after(text: str, marker: str) -> list[str]:
    """The lines of the first fenced code block after the line holding ``marker``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    begin = next(i for i in range(start + 1, len(lines)) if FENCE.match(lines[i]))
    end = next(i for i in range(begin + 1, len(lines)) if FENCE.match(lines[i]))
    return lines[begin + 1 : end]


def ci_readme_block() -> tuple[list[str], str]:
    """.ci/run's copy of the README's test set-up (the lines between its README markers), and the whole script."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = script.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith("# --- README:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("# --- end of README block"))
    return lines[begin + 1 : end], script


def test_readme_test_setup_is_what_ci_runs():
    """The README's "Install and run the tests" block is .ci/run's README block followed by the test command that
    .ci/run runs after it."""
    block, script = ci_readme_block()
    readme = code_block_after(README.read_text(encoding="utf-8"), "**Install and run the tests**")
    assert block, ".ci/run has no README block"
    assert readme[: len(block)] == block
    rest = readme[len(block) :]
    assert rest == ["QT_QPA_PLATFORM=offscreen pytest -q"]
    assert rest[0] in script.splitlines()


def test_readme_app_setup_installs_the_same_way():
    """The app's set-up differs from the tests' only in what it installs and runs."""
    block, _ = ci_readme_block()
    readme = code_block_after(README.read_text(encoding="utf-8"), "**Install and run the explorer")
    assert readme == [*block[:-1], "pip install -e .", "explorer"]


def test_slugs_follow_github():
    assert slug("Draft heads (Medusa, EAGLE, MTP)") == "draft-heads-medusa-eagle-mtp"
    assert slug("Bad input, interrupted runs and outputs") == "bad-input-interrupted-runs-and-outputs"
    assert slug("The `speculative` view") == "the-speculative-view"
    assert slug("2026-12-02: the attention view at N = 2048") == "2026-12-02-the-attention-view-at-n--2048"
    assert slug("bench_app.py → frames") == "bench_apppy--frames"
    assert slug("See [Models](docs/models.md)") == "see-models"


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Run\n\n```\n# Run\n```\n\n## Run\n\n### Run\n", encoding="utf-8")
    assert anchors(page) == {"notes", "run", "run-1", "run-2"}


def test_links_are_found_outside_code(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](a.md#x), ![pic](p.png) and [web](https://example.com).\n"
        "`[not](a link)` and\n```\n[nor](this.md)\n```\n[ref]: docs/b.md\n",
        encoding="utf-8",
    )
    assert relative_links(page) == [(1, "a.md#x"), (1, "p.png"), (6, "docs/b.md")]


def test_a_link_needs_the_file_and_the_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Here\n", encoding="utf-8")
    (tmp_path / "a.md").write_text("# X marks the spot\n", encoding="utf-8")
    assert broken_link(page, "a.md#x-marks-the-spot") is None
    assert broken_link(page, "#here") is None
    assert "does not exist" in broken_link(page, "b.md")
    assert "no heading with the anchor #x" in broken_link(page, "a.md#x")
    assert "no heading with the anchor #there" in broken_link(page, "#there")
