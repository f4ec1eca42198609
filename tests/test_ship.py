"""What ships besides the code: `server.json` (the MCP Registry entry) and `manifest.json` (the MCP Bundle) agree
with the code, the README and each other, and `server.json` is valid against the registry's official schema
(vendored in tests/schemas, see its README: nothing is fetched).

The B24_* variables are checked against the README's configuration table and the names the code reads; which of
them are secrets is not written here a second time but taken from what `settings.load` treats as secret (the
values it masks). When settings.py holds one table of variables, these tests should read it instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from b24_mcp import settings as config
from b24_mcp.variables import TEAM_VARS
from tests.readme import PAGES, README, section
from tests.test_docs import variables_in_code
from tests.values import ROOT

SERVER = json.loads((ROOT / "server.json").read_text(encoding="utf-8"))
MANIFEST = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
PACKAGE = SERVER["packages"][0]
SCHEMA = ROOT / "tests" / "schemas" / "server.schema.2025-12-11.json"
MCPB_VERSION = "2.1.2"  # the MCP Bundle CLI the README's pack command and tests/e2e/test_bundle.py pin


def project_field(name: str) -> str:
    match = re.search(rf'^{name} = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, name
    return match.group(1)


def readme_table() -> dict[str, str]:
    """The configuration tables (docs/configuration.md, docs/team.md): each B24_* variable and its Default cell."""
    rows: dict[str, str] = {}
    for line in PAGES.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        names = re.findall(r"`(B24_[A-Z_]+)`", cells[0]) if line.startswith("| `B24_") else []
        for name in names:
            rows[name] = cells[-1]
    return rows


def secret_variables(tmp_path: Path) -> set[str]:
    """The variables whose values settings.load keeps out of every output, in both modes: the secrets."""
    tokens = tmp_path / "http-tokens"
    tokens.write_text("0" * 64 + "\n")
    webhook = {
        "B24_WEBHOOK_URL": "https://acme.bitrix24.com/rest/1/hookCODEone/",
        "B24_BOT_ID": "456",
        "B24_BOT_TOKEN": "botTOKENtwo",
        "B24_TIMEOUT": "10",
        "B24_RATE_LIMIT": "2",
        "B24_RATE_BURST": "10",
        "B24_FILE_MAX_BYTES": "5242880",
        "B24_LOG_LEVEL": "WARNING",
        "B24_TOOLS": "get_chat",
        "B24_RESULT_BUDGET": "30000",
        "B24_JOURNAL": "on",
        "B24_JOURNAL_FILE": str(tmp_path / "journal.sqlite3"),
        "B24_JOURNAL_DAYS": "30",
        "B24_JOURNAL_MESSAGES": "1000",
        "B24_JOURNAL_BACKFILL": "1",
        # the team deployment's (parsed by b24_mcp.team)
        "B24_HTTP_TOKENS_FILE": str(tokens),
        "B24_HTTP_JWKS_URL": "https://idp.example.com/.well-known/jwks.json",
        "B24_HTTP_ISSUER": "https://idp.example.com/",
        "B24_HTTP_AUDIENCE": "b24-mcp",
        "B24_HTTP_RESOURCE_URL": "https://mcp.example.com/mcp",
        "B24_REDIS_URL": "redis://:redisPASSWORDseven@127.0.0.1:6379/0",
    }
    oauth = {
        "B24_PORTAL_URL": "https://acme.bitrix24.com",
        "B24_ACCESS_TOKEN": "accessTOKENthree",
        "B24_REFRESH_TOKEN": "refreshTOKENfour",
        "B24_CLIENT_ID": "local.clientIDfive",
        "B24_CLIENT_SECRET": "clientSECRETsix",
        "B24_OAUTH_SERVER": "https://oauth.bitrix.info",
        "B24_TOKEN_FILE": str(tmp_path / "tokens.json"),
        "B24_BOT_ID": "456",
        "B24_BOT_TOKEN": "botTOKENtwo",
    }
    assert set(webhook) | set(oauth) == variables_in_code(), "a new variable: give it a value here"
    secret: set[str] = set()
    for env in (webhook, oauth):
        masked = config.load(env).secrets
        secret |= {name for name, value in env.items() if any(s in value for s in masked)}
    return secret


# --- server.json ---------------------------------------------------------------------------------------------


def test_server_json_is_valid_against_the_registry_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert (
        SERVER["$schema"]
        == schema["$id"]
        == "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    )
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(SERVER)]
    assert errors == []
    assert len(SERVER["description"]) <= 100


def test_the_schema_check_catches_a_bad_entry() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    bad = {**SERVER, "description": "x" * 101, "name": "no-slash"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft7Validator)


def test_server_json_names_this_package_at_this_version() -> None:
    version = project_field("version")
    assert SERVER["version"] == PACKAGE["version"] == version
    assert PACKAGE["registryType"] == "pypi" and PACKAGE["identifier"] == project_field("name") == "b24-mcp"
    assert PACKAGE["runtimeHint"] == "uvx" and PACKAGE["transport"] == {"type": "stdio"}
    # PyPI ownership: the registry looks for this line in the package's README (its long description on PyPI).
    assert re.search(rf"^(<!-- )?mcp-name: {re.escape(SERVER['name'])}( -->)?$", README, re.MULTILINE)
    assert SERVER["name"].endswith("/b24-mcp")


def test_server_json_has_every_variable_with_its_secrecy_and_default(tmp_path: Path) -> None:
    variables = {v["name"]: v for v in PACKAGE["environmentVariables"]}
    table = readme_table()
    assert len(variables) == len(PACKAGE["environmentVariables"])  # no duplicates
    assert set(variables) == set(table) == variables_in_code()
    secrets = secret_variables(tmp_path)
    assert {"B24_WEBHOOK_URL", "B24_BOT_TOKEN", "B24_CLIENT_SECRET"} <= secrets
    assert {name for name, v in variables.items() if v["isSecret"]} == secrets
    for name, v in variables.items():
        assert v["description"] and isinstance(v["isRequired"], bool), name
        default = re.fullmatch(r"`([^`]+)`", table[name])  # a literal default in the README, e.g. `10`
        assert v.get("default") == (default.group(1) if default else None), name
        assert "default" not in v or name not in secrets
    assert variables["B24_LOG_LEVEL"]["choices"] == [level for level in config.LOG_LEVELS if level != "CRITICAL"]


# --- manifest.json (MCP Bundle) ----------------------------------------------------------------------------------


def bundle_env(user_config: dict[str, Any]) -> dict[str, str]:
    """The server's environment as a host makes it: manifest defaults, then the user's values, substituted."""
    values = {k: o["default"] for k, o in MANIFEST["user_config"].items() if "default" in o} | user_config
    env: dict[str, str] = {}
    for name, template in MANIFEST["server"]["mcp_config"]["env"].items():
        key = re.fullmatch(r"\$\{user_config\.([a-z_]+)\}", template)
        assert key, template
        env[name] = str(values[key.group(1)]) if key.group(1) in values else template
    return env


def test_manifest_describes_a_uv_bundle_of_this_package() -> None:
    assert MANIFEST["manifest_version"] == "0.4"
    assert MANIFEST["name"] == PACKAGE["identifier"] and MANIFEST["version"] == SERVER["version"]
    assert MANIFEST["description"] == SERVER["description"]
    server = MANIFEST["server"]
    assert server["type"] == "uv" and (ROOT / server["entry_point"]).is_file()
    assert server["mcp_config"]["command"] == "uv" and server["mcp_config"]["args"][-1] == "b24-mcp"
    assert MANIFEST["privacy_policies"] and all(p.startswith("https://") for p in MANIFEST["privacy_policies"])
    png = (ROOT / MANIFEST["icon"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (512, 512)
    assert MANIFEST["icons"] == [{"src": MANIFEST["icon"], "size": "512x512"}]
    ignored = (ROOT / ".mcpbignore").read_text().splitlines()
    assert {"/tests", "/bench", "/.venv"} <= set(ignored)


def test_manifest_user_config_covers_every_variable_and_marks_secrets(tmp_path: Path) -> None:
    env = MANIFEST["server"]["mcp_config"]["env"]
    # A bundle is a desktop stdio server: the team deployment's variables (HTTP auth, Redis) do not apply to it.
    assert set(env) == variables_in_code() - set(TEAM_VARS)
    keys = {name: re.sub(r"^\$\{user_config\.(.+)\}$", r"\1", template) for name, template in env.items()}
    assert sorted(keys.values()) == sorted(MANIFEST["user_config"])
    secrets = secret_variables(tmp_path)
    for name, key in keys.items():
        option = MANIFEST["user_config"][key]
        assert option.get("sensitive", False) == (name in secrets), name
        # The host leaves ${user_config.KEY} as is when the user gave no value and there is no default: every
        # optional entry has one ("" for none), so no placeholder ever reaches the server.
        assert option["required"] or "default" in option, key


def test_a_bundle_configured_for_either_mode_loads(tmp_path: Path) -> None:
    webhook = bundle_env({"webhook_url": "https://acme.bitrix24.com/rest/1/abc/", "bot_id": "456", "bot_token": "t"})
    assert not any("${" in value for value in webhook.values())
    assert config.load(webhook).mode == "webhook"
    oauth = bundle_env(
        {
            "portal_url": "https://acme.bitrix24.com",
            "access_token": "a",
            "refresh_token": "r",
            "client_id": "local.1",
            "client_secret": "s",
            "token_file": str(tmp_path / "tokens.json"),
            "bot_id": 456,
        }
    )
    settings = config.load(oauth)
    assert settings.mode == "oauth" and settings.bot_id == 456 and settings.timeout == 10


# --- the installed set is the tested one --------------------------------------------------------------------------


def test_the_install_constraints_are_the_lock() -> None:
    """`uv tool install -c constraints.txt` installs uv.lock's versions (tests/installed.py checks them in CI); without
    the file uv resolved the newest versions the ranges allow (httpx 0.29.0 for a locked 0.28.1)."""
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in UV
    assert uv, "uv is needed to export the lock"
    command = [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
    exported = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    committed = (ROOT / "constraints.txt").read_text()

    def pins(text: str) -> list[str]:  # the header names the command, which differs by its -o
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert pins(exported) == pins(committed), (
        "regenerate: uv export --frozen --no-dev --no-hashes --no-emit-project -o constraints.txt"
    )
    install = section("## Install")
    assert "uv tool install --compile-bytecode -c /path/to/b24-mcp/constraints.txt /path/to/b24-mcp" in install
    assert "--constraints constraints.txt dist/*.whl" in (ROOT / ".ci" / "run").read_text()


# --- the README's host snippets ----------------------------------------------------------------------------------


def test_readme_host_snippets_use_the_installed_command() -> None:
    hosts = section("## Adding it to your MCP host")
    claude_code = hosts.split("claude mcp add", 1)[1].split("```", 1)[0]
    assert claude_code.rstrip().endswith("-- b24-mcp")
    cursor = json.loads(hosts.split("```json", 1)[1].split("```", 1)[0])
    assert cursor["mcpServers"]["bitrix24"]["command"] == "b24-mcp"
    assert f"npx -y @anthropic-ai/mcpb@{MCPB_VERSION} pack . b24-mcp.mcpb" in hosts
    # The launch table's first row, the documented default, is the installed command.
    rows = [line for line in hosts.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `b24-mcp`, installed by `uv tool install") and "(the default)" in rows[0]
    install = section("## Install")
    assert "uvx b24-mcp" in install
