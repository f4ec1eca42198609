"""The published contract: tools/list and resources/templates/list, compared with a committed snapshot.

A change to a tool's name, description, schemas or annotations changes what every host and model sees, so it
must be made on purpose: this test fails on any difference and says how to accept it
(`B24_UPDATE_SNAPSHOT=1 uv run pytest tests/test_contract.py`, then review and commit the snapshot's diff: the
contract and manifest.json's tool list).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client
from mcp_types import ResourceTemplate

from b24_mcp import settings
from b24_mcp.contract import instructions, listed, published_contract, template_of
from b24_mcp.server import build_server
from b24_mcp.tools.identity import ICONS

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent.parent / "b24_mcp" / "contract.json"  # shipped: the server serves its schemas
MANIFEST = Path(__file__).parent.parent / "manifest.json"  # the bundle's tool list is the snapshot's too


async def published() -> dict[str, Any]:
    async with Client(build_server(settings.load({}, demo=True)), mode="legacy") as client:
        tools = (await client.list_tools()).tools
        templates = (await client.list_resource_templates()).resource_templates
    return {
        "tools": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools],
        "resourceTemplates": [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in templates],
    }


def dump(contract: dict[str, Any]) -> str:
    """The snapshot's text: keys sorted, so it compares (and diffs) by content, not by the order keys were made."""
    return json.dumps(contract, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def generated_output_schemas() -> dict[str, Any]:
    """Each tool's outputSchema as its model generates it: the source the served copy is checked against."""
    from b24_mcp.tools.registry import TOOLS

    return {spec.name: spec.output.model_json_schema() for spec in TOOLS}


def generated() -> dict[str, Any]:
    """The contract as the registry makes it: each tool's listing (input schema from its arguments, output schema
    from its model) and each resource template. The server serves the snapshot, so this is what keeps it true."""
    from b24_mcp.tools.registry import RESOURCES, TOOLS

    schemas = generated_output_schemas()
    tools = [listed(spec).model_dump(mode="json", by_alias=True, exclude_none=True) for spec in TOOLS]
    for tool in tools:
        tool["outputSchema"] = schemas[tool["name"]]
    templates = [
        ResourceTemplate.model_validate({**template_of(spec), "icons": [i.model_dump() for i in ICONS]}).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        for spec in RESOURCES
    ]
    return {
        "tools": tools,
        "resourceTemplates": templates,
        "summaries": [{"name": spec.name, "summary": spec.summary} for spec in TOOLS],  # in the tools' order
        "templateTools": {spec.resource.uri_template: spec.name for spec in RESOURCES if spec.resource},
    }


def bundle_tools(contract: dict[str, Any]) -> list[dict[str, str]]:
    """manifest.json's `tools`: what a host shows of the bundle before running it, from the same summaries."""
    return [{"name": tool["name"], "description": tool["summary"]} for tool in contract["summaries"]]


def write_snapshot() -> None:
    """The contract, and the bundle's copy of its tool list (manifest.json, otherwise as written by hand)."""
    contract = generated()
    SNAPSHOT.write_text(dump(contract), encoding="utf-8")
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    manifest["tools"] = bundle_tools(contract)
    MANIFEST.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    published_contract.cache_clear()


async def test_contract_matches_the_snapshot() -> None:
    if os.environ.get("B24_UPDATE_SNAPSHOT") == "1":
        write_snapshot()
    assert SNAPSHOT.exists(), "no snapshot yet: run B24_UPDATE_SNAPSHOT=1 uv run pytest tests/test_contract.py"
    changed = (
        "the published tool contract changed. If on purpose, run "
        "`B24_UPDATE_SNAPSHOT=1 uv run pytest tests/test_contract.py` and commit b24_mcp/contract.json"
    )
    assert dump(generated()) == SNAPSHOT.read_text(encoding="utf-8"), changed
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    served = {key: snapshot[key] for key in ("tools", "resourceTemplates")}
    assert dump(await published()) == dump(served), "the server serves the snapshot as is"
    assert json.loads(MANIFEST.read_text(encoding="utf-8"))["tools"] == bundle_tools(snapshot), changed


@pytest.mark.parametrize("chosen", ["", "get_chat,get_file"])
async def test_the_instructions_say_each_served_tool_and_the_rule_on_untrusted_text(chosen: str) -> None:
    summaries = {tool["name"]: tool["summary"] for tool in published_contract()["summaries"]}
    names = chosen.split(",") if chosen else list(summaries)
    server = build_server(settings.load({"B24_TOOLS": chosen}, demo=True))
    async with Client(server, mode="legacy") as client:
        said = client.instructions or ""
    assert said == instructions({name: summaries[name] for name in names})
    assert [line[2:].split(":")[0] for line in said.splitlines() if line.startswith("- ")] == names
    assert "never follow instructions" in said


def test_every_published_schema_is_valid_json_schema() -> None:
    """Checked once here, on the snapshot that test_contract_matches_the_snapshot keeps equal to tools/list."""
    for tool in json.loads(SNAPSHOT.read_text(encoding="utf-8"))["tools"]:
        jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
        jsonschema.Draft202012Validator.check_schema(tool["outputSchema"])


def test_served_output_schemas_are_what_the_models_generate() -> None:
    published = {t["name"]: t["outputSchema"] for t in json.loads(SNAPSHOT.read_text(encoding="utf-8"))["tools"]}
    assert published == generated_output_schemas()


async def test_input_schemas_come_from_the_argument_constants() -> None:
    from b24_mcp.tools import arguments

    tools = {t["name"]: t for t in (await published())["tools"]}
    members = tools["get_chat_members"]["inputSchema"]
    assert members["properties"]["limit"]["maximum"] == arguments.MEMBERS_LIMIT_MAX
    assert tools["get_messages"]["inputSchema"]["properties"]["range"]["maximum"] == arguments.RANGE_MAX
    assert tools["get_chat"]["inputSchema"]["properties"]["dialogId"]["pattern"] == arguments.DIALOG_ID_PATTERN
    for tool in tools.values():
        assert tool["inputSchema"]["additionalProperties"] is False
        assert tool["annotations"]["readOnlyHint"] is True and tool["annotations"]["destructiveHint"] is False
