"""The documentation stays whole: every page in the nav exists, every relative link in the README
and the docs resolves (anchors included), every `make` target and `mlops` command they mention
exists, and the make-targets page lists every documented target. (`make lint` builds the site
with `mkdocs build --strict`; this test needs no mkdocs.)"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.cli import COMMANDS
from support import ROOT

pytestmark = pytest.mark.unit

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
WORD = re.compile(r"^[a-z][a-z0-9-]*$")


class _MkdocsLoader(yaml.SafeLoader):
    """Reads mkdocs.yml without importing anything its ``!!python/name:`` tags name."""


_MkdocsLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)


def nav_pages(nav: Any) -> list[str]:
    """Every page path in a mkdocs ``nav`` (nested sections included)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans: where links are links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def code(text: str) -> list[str]:
    """The contents of fenced code blocks (line by line) and of code spans."""
    blocks = [line for m in FENCE.finditer(text) for line in m.group(0).splitlines()[1:-1]]
    spans = [m.group(2) for m in CODE_SPAN.finditer(FENCE.sub("", text))]
    return blocks + spans


def slug(heading: str) -> str:
    """A heading's anchor as both MkDocs (toc) and GitHub make it, for plain-text headings."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in HEADING.findall(FENCE.sub("", page.read_text()))}


def relative_links(page: Path) -> list[str]:
    text = prose(page.read_text())
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def words_after(command: str, snippet: str, anywhere: bool = True) -> list[list[str]]:
    """For each ``<command> ...`` in a snippet of code, the targets or subcommands it names.

    Where the command starts a line or a span (a command someone would type) every plain word
    that follows counts (``make data repro``); inside prose or a diagram label only the first
    (``make docs builds it`` names ``docs``), and nothing unless ``anywhere``.
    """
    found = []
    for m in re.finditer(rf"(?<![\w./$-]){command}((?:[ \t]+[^\s#;&|]+)+)", snippet):
        before = snippet[: m.start()]
        typed = re.fullmatch(r"\s*(\$\s*)?", before.rsplit("\n", 1)[-1]) or before.rstrip().endswith(("&&", ";"))
        if not (typed or anywhere):
            continue
        words: list[str] = []
        for raw in m.group(1).split():
            token = raw.strip("\"'`,:()")
            if "=" in token or token.startswith("-"):  # VAR=value and --options go on
                continue
            if not WORD.match(token):
                break
            words.append(token)
            if not typed or raw.endswith((",", ":", ";")):  # the sentence goes on from here
                break
        found.append(words)
    return found


def makefile_targets() -> dict[str, str]:
    """Target name -> its ``## `` help text (empty when it has none)."""
    text = (ROOT / "Makefile").read_text()
    return {m[0]: m[1] for m in re.findall(r"^([a-z][a-z0-9-]*):[^=\n]*?(?:## (.*))?$", text, re.M)}


def test_every_page_in_the_nav_exists_and_every_page_is_in_the_nav():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_MkdocsLoader)
    assert config["docs_dir"] == "docs"
    pages = nav_pages(config["nav"])
    assert len(pages) == len(set(pages)), "a page is listed twice"
    assert not [p for p in pages if not (DOCS / p).is_file()]
    assert {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")} == set(pages)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading with that anchor")
        elif path and not file.is_relative_to(DOCS) and page.is_relative_to(DOCS):
            broken.append(f"{target}: outside docs/, so not part of the site")
    assert not broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_and_mlops_command_mentioned_exists(page):
    targets, snippets = makefile_targets(), code(page.read_text())
    unknown = [
        f"make {word}"
        for snippet in snippets
        for words in words_after("make", snippet)
        for word in words
        if word not in targets
    ]
    unknown += [
        f"mlops {words[0]}"
        for snippet in snippets
        for words in words_after("mlops", snippet, anywhere=False)  # "the mlops package" is prose
        if words and words[0] not in COMMANDS
    ]
    assert not unknown


def test_the_make_targets_page_lists_every_documented_target():
    listed = {w for s in code((DOCS / "make-targets.md").read_text()) for ws in words_after("make", s) for w in ws}
    documented = {name for name, help_text in makefile_targets().items() if help_text}
    assert documented <= listed


def test_the_checks_see_what_they_check():
    """The helpers find links, anchors, targets and commands in the forms the docs use."""
    text = (
        "See [a](pipeline.md#the-model), [b][], <https://x.y>, `make pr BASE=main`, `make data repro`.\n\n"
        "```bash\nmake demo   # a comment\n```\n\n[b]: serving.md\n\n## The rooms of `src/mlops`\n"
    )
    assert INLINE_LINK.findall(prose(text)) == ["pipeline.md#the-model"]
    assert REFERENCE_LINK.findall(prose(text)) == ["serving.md"]
    assert [w for s in code(text) for ws in words_after("make", s) for w in ws] == ["demo", "pr", "data", "repro"]
    assert words_after("mlops", "mlops serve up [ENV]") == [["serve", "up"]]
    assert words_after("make", '"make rollback-production" .-> production') == [["rollback-production"]]
    assert words_after("make", "make pr: dvc repro, report") == [["pr"]]
    assert words_after("make", "the documentation (make docs builds it)") == [["docs"]]
    assert words_after("make", "$ make data repro && make test") == [["data", "repro"], ["test"]]
    assert words_after("mlops", "mlops.core.paths") == []
    assert words_after("mlops", "the mlops commands", anywhere=False) == []
    assert slug("The rooms of `src/mlops`") == "the-rooms-of-srcmlops"
    assert slug("Deploy, promote, roll back") == "deploy-promote-roll-back"
