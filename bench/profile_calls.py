"""What one get_chat call spends its time on, in-process: profile it rather than guess.

    uv run pyinstrument bench/profile_calls.py

500 calls through the SDK's in-memory client, b24-mcp's tool layer and Bitrix24 client, to the stand-in
portal over loopback HTTPS. (This is how the per-request `import sniffio` miss inside httpcore was found.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import trustme  # noqa: E402
from mcp import Client  # noqa: E402

from b24_mcp import settings as config  # noqa: E402
from b24_mcp.server import build_server  # noqa: E402
from tests.portal import StandInPortal  # noqa: E402


async def main(portal: StandInPortal) -> None:
    settings = config.load(
        {
            "B24_WEBHOOK_URL": portal.webhook_url,
            "B24_BOT_ID": "456",
            "B24_BOT_TOKEN": portal.bot_token,
            "B24_RATE_LIMIT": "1000",
            "B24_RATE_BURST": "1000",
        }
    )
    async with Client(build_server(settings), mode="legacy") as client:
        for _ in range(500):
            result = await client.call_tool("get_chat", {"dialogId": "chat5"})
            assert not result.is_error


if __name__ == "__main__":
    ca = trustme.CA()
    with StandInPortal(tls_ca=ca) as portal:
        os.environ["SSL_CERT_FILE"] = str(portal.ca_pem_path)
        anyio.run(main, portal)
