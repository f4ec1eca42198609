"""The shipped wheel, installed: run by `.ci/run` with the Python of a fresh virtualenv that holds only the wheel
and its dependencies (no dev tools, nothing from this repository on the path):

    VENV/bin/python tests/installed.py dist/b24_mcp-*.whl VENV/bin/b24-mcp

It checks the wheel carries the package and nothing else (no tests, no bench), that this Python imports
b24_mcp from the virtualenv, not the source tree, that every dependency is at uv.lock's version (the
installed set is the tested one), and then spawns the installed `b24-mcp --demo` command over
stdio with the SDK's client, in both protocol eras: tools/list, get_chat with its resource link, the linked
resource, and a completion of its dialogId. Exit 0 when all holds; an AssertionError says what did not.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import zipfile
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import ResourceLink, ResourceTemplateReference, TextContent


def check_wheel(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = {top for top in tops if top.endswith(".dist-info")}
    assert tops - dist_info == {"b24_mcp"}, f"the wheel carries more than the package: {sorted(tops)}"
    assert "b24_mcp/server.py" in names and "b24_mcp/py.typed" in names
    assert not [n for n in names if "tests" in n.split("/") or "bench" in n.split("/")], names


def check_environment() -> None:
    spec = importlib.util.find_spec("b24_mcp")
    assert spec and spec.origin and Path(spec.origin).is_relative_to(sys.prefix), f"b24_mcp from {spec}"
    for dev in ("pytest", "mypy", "ruff", "trustme", "pyinstrument"):  # (jsonschema comes with the SDK)
        assert importlib.util.find_spec(dev) is None, f"a dev dependency is installed: {dev}"


async def round_trip(command: str, mode: str) -> None:
    env = {k: os.environ[k] for k in ("PATH", "HOME", "SYSTEMROOT") if k in os.environ}
    params = StdioServerParameters(command=command, args=["--demo"], env=env)
    async with Client(stdio_client(params), mode=mode, read_timeout_seconds=60) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        assert tools == [
            "get_chat",
            "get_chat_members",
            "get_messages",
            "get_message",
            "get_file",
            "list_chats",
            "get_updates",
            "search_messages",
        ], tools
        result = await client.call_tool("get_chat", {"dialogId": "chat5"})
        assert not result.is_error and result.structured_content and result.structured_content["id"] == 5, result
        text = result.content[0]
        assert isinstance(text, TextContent) and '"Support Chat" (chat5)' in text.text, text
        (link,) = [block for block in result.content if isinstance(block, ResourceLink)]
        read = await client.read_resource(link.uri)
        assert '"dialogId": "chat5"' in getattr(read.contents[0], "text", ""), read
        completion = await client.complete(
            ResourceTemplateReference(uri="bitrix24://chat/{dialogId}"), {"name": "dialogId", "value": "chat"}
        )
        assert completion.completion.values[0] == "chat5", completion
    print(f"✓ {command} --demo over stdio ({mode}): {len(tools)} tools, get_chat, its resource, a completion")


def check_versions(constraints: Path) -> None:
    """Every installed distribution is at the version uv.lock pins: constraints.txt, exported from the lock, is
    what `uv tool install -c` was given, and test_ship keeps it equal to the lock."""
    from importlib.metadata import distributions

    def name(raw: str) -> str:
        return re.sub(r"[-_.]+", "-", raw).lower()

    pinned: dict[str, set[str]] = {}  # a name may be pinned twice, under two markers (python_full_version < '3.11')
    for pin in re.finditer(r"^([A-Za-z0-9._-]+)==([^\s;]+)", constraints.read_text(), re.MULTILINE):
        pinned.setdefault(name(pin[1]), set()).add(pin[2])
    installed = {name(d.metadata["Name"]): d.version for d in distributions()}
    installed.pop("b24-mcp")
    wrong = {dist: (v, sorted(pinned.get(dist, ()))) for dist, v in installed.items() if v not in pinned.get(dist, ())}
    assert not wrong, f"installed versions differ from uv.lock's (installed, locked): {wrong}"


def main() -> None:
    wheel, command = Path(sys.argv[1]), sys.argv[2]
    check_wheel(wheel)
    print(f"✓ {wheel.name} holds b24_mcp and its metadata only")
    check_environment()
    print(f"✓ {sys.prefix} imports the installed b24_mcp, without dev dependencies")
    check_versions(Path(__file__).resolve().parent.parent / "constraints.txt")
    print("✓ every installed dependency is at uv.lock's version (constraints.txt)")
    for mode in ("legacy", "auto"):
        anyio.run(round_trip, command, mode)


if __name__ == "__main__":
    main()
