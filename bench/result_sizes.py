"""The largest result each tool can produce, in characters, without a budget and with the default one; prints JSON.

    uv run python bench/result_sizes.py

Sizes, not times: what a host receives (every text block plus the structured content's JSON) for the largest
answers Bitrix24 can give: 101 messages of 20,000 characters, 200 members with long job titles, one 20,000-character
message. "without" sets B24_RESULT_BUDGET to 10,000,000 (no cut); "with" leaves the default.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from mcp import Client  # noqa: E402
from mcp_types import CallToolResult, TextContent  # noqa: E402

from b24_mcp import demo, settings  # noqa: E402
from b24_mcp.server import build_server  # noqa: E402
from b24_mcp.standin import StandIn  # noqa: E402
from b24_mcp.standin_data import MESSAGES, USERS  # noqa: E402
from tests.values import CODE, TOKEN, webhook_vars  # noqa: E402

TEXT = ('A line of a long message, with "quotes" and a tab\t.\n' * 400)[:20_000]


def portal() -> StandIn:
    messages = [{**MESSAGES[2], "id": 7000 + i, "text": TEXT} for i in range(101)]
    users = {uid: {**USERS[1], "id": uid, "name": f"Person {uid}", "workPosition": "j" * 300} for uid in range(1, 200)}
    return StandIn(
        bot_token=TOKEN,
        webhook_code=CODE,
        messages=[*MESSAGES, *messages],
        users={**USERS, **users},
        members={"chat5": [456, *users]},
    )


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_chat", {"dialogId": "chat5"}),
    ("get_chat_members", {"dialogId": "chat5", "limit": 200}),
    ("get_messages", {"messageId": 7050, "range": 50}),
    ("get_message", {"messageId": 7050}),
]


def measured(result: CallToolResult) -> dict[str, int]:
    text = sum(len(b.text) for b in result.content if isinstance(b, TextContent))
    structured = len(json.dumps(result.structured_content, ensure_ascii=False, separators=(",", ":")))
    return {"total": text + structured, "structured": structured}


async def sizes(budget: str | None) -> dict[str, dict[str, int]]:
    stand_in = portal()
    env = webhook_vars(B24_RATE_BURST="50", **({"B24_RESULT_BUDGET": budget} if budget else {}))
    server = build_server(
        settings.load(env), transport=httpx.MockTransport(lambda request: demo.answer(stand_in, request))
    )
    out = {}
    async with Client(server, mode="legacy") as client:
        for tool, arguments in CALLS:
            out[tool] = measured(await client.call_tool(tool, arguments))
    return out


async def main() -> None:
    without, within = await sizes("10000000"), await sizes(None)
    print(json.dumps({"budget": settings.RESULT_BUDGET, "without": without, "with": within}, indent=2))
    assert all(size["total"] <= settings.RESULT_BUDGET for size in within.values())


if __name__ == "__main__":
    asyncio.run(main())
