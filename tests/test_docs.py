"""The README and the example host configuration stay true to the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from b24_mcp import settings as config
from b24_mcp.team import TEAM_VARS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def variables_in_code() -> set[str]:
    source = "\n".join(p.read_text() for p in (ROOT / "b24_mcp").glob("*.py"))
    return set(re.findall(r"\bB24_[A-Z_]+\b", source))


def test_every_variable_the_code_reads_is_in_the_readme_table() -> None:
    table = set(re.findall(r"^\| `(B24_[A-Z_]+)`(?:, `(B24_[A-Z_]+)`)?", README, re.MULTILINE))
    documented = {name for row in table for name in row if name}
    assert variables_in_code() <= documented


def test_example_config_entries_are_valid_and_cover_every_variable() -> None:
    servers = json.loads((ROOT / "claude_config.example.json").read_text())["mcpServers"]
    seen: set[str] = set()
    for entry in servers.values():
        assert entry["command"] == "uv" and "b24-mcp" in entry["args"]
        env = entry.get("env", {})
        seen |= set(env)
        settings = config.load(env, demo="--demo" in entry["args"])  # placeholders must load: no ConfigError
        assert settings.demo == ("--demo" in entry["args"])
    # The team deployment's variables belong to an HTTP server, not to a desktop host's entry (README, "Run it
    # for a team", documents them).
    assert variables_in_code() - set(TEAM_VARS) <= seen


def test_quick_start_is_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick.strip().splitlines()] == [
        "uv run b24-mcp check --demo",
        "uv run pytest",
    ]
    assert "uv run pytest" in (ROOT / ".ci" / "run").read_text()
