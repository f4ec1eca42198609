"""The README and the example host configuration stay true to the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from b24_mcp import settings as config
from b24_mcp.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def variables_in_code() -> set[str]:
    source = "\n".join(p.read_text() for p in (ROOT / "b24_mcp").glob("*.py"))
    return set(re.findall(r"\bB24_[A-Z_]+\b", source))


def section(title: str) -> str:
    """A README section's text, up to the next heading of the same or a higher level."""
    level = title.split(" ", 1)[0]
    body = README.split(f"\n{title}\n", 1)[1]
    return re.split(rf"\n#{{1,{len(level)}}} ", body, maxsplit=1)[0]


def readme_table() -> list[str]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)`(?:, `([A-Z0-9_]+)`)?", section("### Configuration"), re.MULTILINE)
    return [name for row in rows for name in row if name]


def test_the_readme_table_is_the_table_of_variables() -> None:
    assert readme_table() == [v.name for v in config.VARIABLES]
    assert variables_in_code() <= set(config.KNOWN)  # every name the code mentions is in the one table


def test_example_config_is_refused_as_examples_and_covers_every_variable() -> None:
    """Copied as is, every entry but the demo's is refused, each example named in its own line."""
    servers = json.loads((ROOT / "claude_config.example.json").read_text())["mcpServers"]
    seen: set[str] = set()
    for entry in servers.values():
        env = entry.get("env", {})
        seen |= set(env)
        assert not config.unknown_variables(env)
        if "--demo" in entry["args"]:
            assert config.load(env, demo=True).demo
            continue
        with pytest.raises(ConfigError) as info:
            config.load(env)
        problems = config.problems_of(info.value)
        assert problems and all("still holds an example value" in p for p in problems), problems
    assert {v.name for v in config.VARIABLES if v.name.startswith("B24_")} <= seen


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick.strip().splitlines()] == [
        "uv run b24-mcp check --demo",
        "uv run pytest",
    ]
    assert "uv run pytest" in (ROOT / ".ci" / "run").read_text()
