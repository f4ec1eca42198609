"""The README and the example host configuration stay true to the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from b24_mcp import settings as config
from b24_mcp import variables
from b24_mcp.errors import ConfigError, problems_of
from b24_mcp.variables import TEAM_VARS
from tests.readme import README, code_blocks, section
from tests.values import ROOT


def variables_in_code() -> set[str]:
    source = "\n".join(p.read_text() for p in (ROOT / "b24_mcp").glob("*.py"))
    return set(re.findall(r"\bB24_[A-Z_]+\b", source))


def readme_table(heading: str = "# Configuration") -> list[str]:
    rows = re.findall(r"^\| `([A-Z0-9_]+)`(?:, `([A-Z0-9_]+)`)?", section(heading), re.MULTILINE)
    return [name for row in rows for name in row if name]


def test_the_readme_table_is_the_table_of_variables() -> None:
    """The desktop settings in docs/configuration.md, the team deployment's in "Run it for a team" (docs/team.md): the
    table's order."""
    documented = readme_table() + readme_table("## Run it for a team")
    assert documented == [v.name for v in variables.VARIABLES]
    assert variables_in_code() <= set(variables.KNOWN)  # every name the code mentions is in the one table


def test_example_config_is_refused_as_examples_and_covers_every_variable() -> None:
    """Copied as is, every entry but the demo's is refused, each example named in its own line."""
    servers = json.loads((ROOT / "claude_config.example.json").read_text())["mcpServers"]
    seen: set[str] = set()
    for entry in servers.values():
        env = entry.get("env", {})
        seen |= set(env)
        assert not variables.unknown_variables(env)
        if "--demo" in entry["args"]:
            assert config.load(env, demo=True).demo
            continue
        with pytest.raises(ConfigError) as info:
            config.load(env)
        problems = problems_of(info.value)
        assert problems and all("still holds an example value" in p for p in problems), problems
    # The team deployment's variables belong to an HTTP server, not to a desktop host's entry (README, "Run it
    # for a team", documents them).
    assert {v.name for v in variables.VARIABLES if v.name.startswith("B24_")} - set(TEAM_VARS) <= seen


def test_quick_start_is_the_clone_and_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick.strip().splitlines()] == [
        "git clone https://github.com/b24-mcp/b24-mcp && cd b24-mcp",
        "uv run b24-mcp check --demo",
        "uv run pytest",
    ]
    assert "uv run pytest" in (ROOT / ".ci" / "run").read_text()


def test_hosts_launch_the_quiet_lean_form() -> None:
    """The installed command (or, from a clone, `uv run --no-sync`): nothing resolved, synced, recompiled and
    announced on stderr at each launch."""
    servers = json.loads((ROOT / "claude_config.example.json").read_text())["mcpServers"]
    for entry in servers.values():
        assert entry["command"] == "b24-mcp" and entry["args"] in ([], ["--demo"])
    hosts = section("## Adding it to your MCP host")
    blocks = code_blocks(hosts, "sh") + code_blocks(hosts, "json")
    launches = [
        line
        for block in blocks
        for line in block.splitlines()
        if "b24-mcp" in line and ("uv run" in line or '"run"' in line)
    ]
    assert all("uv run --no-sync" in line or '"--no-sync"' in line for line in launches), launches
    assert "-- b24-mcp" in hosts and '"command": "b24-mcp"' in hosts  # Claude Code's and Cursor's snippets


def test_uv_is_installed_in_a_way_that_works_on_externally_managed_pythons() -> None:
    quick = section("## Quick start")
    assert "curl -LsSf https://astral.sh/uv/install.sh | sh" in quick and "pipx install uv" in quick
    assert "Not `pip install uv`" in quick and "externally managed" in quick


def test_the_node_version_the_inspector_needs_is_stated() -> None:
    from tests.e2e.test_inspector import NODE_VERSION

    def words(text: str) -> str:
        return " ".join(text.split())

    assert f"Node.js {NODE_VERSION} or newer" in words(section("## Quick start"))
    assert f"declares {NODE_VERSION} or newer" in words(section("## Adding it to your MCP host"))


def test_the_readme_shows_what_check_says_of_the_example_config() -> None:
    """Re-captured from a real run: the block is check's output for the env block it describes."""
    import io

    from b24_mcp import check

    shown = code_blocks(section("## Connecting to your Bitrix24"), "text")[1]
    env = json.loads((ROOT / "claude_config.example.json").read_text())["mcpServers"]["bitrix24"]["env"]
    env = {**env, "B24_BOT_TOKN": "x", "B24_TIMEOUT": "10s"}
    out = io.StringIO()
    assert check.run([], demo=False, dialog=None, env=env, out=out) == 2
    assert out.getvalue() == shown


def test_links_between_the_readme_and_its_pages_resolve() -> None:
    """The README is a front page linking docs/: each relative link names a page that exists and a heading in it."""

    def anchors(page: Path) -> set[str]:  # GitHub's heading ids: lower case, punctuation dropped, spaces as -
        titles = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
        return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 1
    seen = 0
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#:\s]*)(?:#([^)\s]+))?\)", page.read_text()):
            linked = (page.parent / target).resolve() if target else page
            assert linked.is_file(), f"{page.name} links to a missing {target}"
            assert not anchor or anchor in anchors(linked), f"{page.name} links to #{anchor} of {linked.name}"
            seen += 1
    readme = (ROOT / "README.md").read_text()
    assert all(f"](docs/{page.name})" in readme for page in pages[1:]), "every page is linked from the README"
    assert seen > 10


def test_the_team_section_says_what_redis_holds_and_what_a_killed_replica_costs() -> None:
    """What the README promises about Redis and renewals is what the code does, and its numbers are the code's."""
    from b24_mcp.bitrix24.oauth import SETTLE_LIMIT
    from b24_mcp.bitrix24.redis_state import LOCK_MARGIN
    from b24_mcp.http_auth import LEEWAY
    from b24_mcp.transport import HEADER_TIMEOUT, IDLE_TIMEOUT

    team = " ".join(section("## Run it for a team").split())
    assert "loses nothing" not in team
    assert "tokens in plaintext" in team
    assert f"at most `B24_TIMEOUT` + {2 * LOCK_MARGIN:g} s" in team
    assert f"within {HEADER_TIMEOUT:g} s" in team and f"idle {IDLE_TIMEOUT:g} s" in team
    assert f"({LEEWAY} s of clock skew allowed, on `exp` too)" in team
    oauth = " ".join(section("# With an OAuth application instead of a webhook").split())
    assert f"waits up to {SETTLE_LIMIT:g} s for a renewal under way" in oauth
