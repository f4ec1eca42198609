"""The README and the pages under docs/ as the tests read them: their sections and code blocks, so that every
test keeping a part of them true reads them the same way."""

from __future__ import annotations

import re

from tests.values import ROOT

README = (ROOT / "README.md").read_text()
PAGES = "\n".join([README, *(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))])
"""The README followed by every docs/ page: a section is found by its title wherever it lives."""


def section(title: str) -> str:
    """A section's text, up to the next heading of the same or a higher level (the README or a docs/ page)."""
    level = title.split(" ", 1)[0]
    body = PAGES.split(f"\n{title}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def readme_block(after: str, index: int = 0) -> str:
    """The `index`th ```text block after the first occurrence of `after`: an output the README shows."""
    return code_blocks(README.split(after, 1)[1], "text")[index]
