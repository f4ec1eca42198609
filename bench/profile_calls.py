"""What one get_chat call spends its time on: profile it rather than guess.

    uv run pyinstrument bench/profile_calls.py           # 500 calls in-process: the steady state
    uv run python bench/profile_calls.py --first [N]     # the first call of N fresh processes, and the second

The steady run makes 500 calls through the SDK's in-memory client, b24-mcp's tool layer and Bitrix24 client,
to the stand-in portal over loopback HTTPS. (This is how the per-request `import sniffio` miss inside httpcore
was found.) --first starts N processes that import only what the server imports, warm the connection as the
server does after tools/list (the client's modules imported in a thread, then the client built), pause 0.3 s
as bench.py does, then profile b24-mcp's first get_chat (tool layer down to the portal, without the SDK) and,
separately, its second; each is printed as one profile over the N processes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
from pyinstrument import Profiler  # noqa: E402
from pyinstrument.renderers import ConsoleRenderer  # noqa: E402
from pyinstrument.session import Session  # noqa: E402

from b24_mcp import settings as config  # noqa: E402

PAUSE = 0.3
FAST = {"B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}


async def steady(settings: config.Settings) -> None:
    from mcp import Client

    from b24_mcp.server import build_server

    async with Client(build_server(settings), mode="legacy") as client:
        for _ in range(500):
            result = await client.call_tool("get_chat", {"dialogId": "chat5"})
            assert not result.is_error


async def child(out: Path) -> None:
    """One fresh process: warm as the server does, pause, then profile the first and the second call."""
    from b24_mcp.server import Connection, _import_client_modules
    from b24_mcp.tools.get_chat import TOOL as GET_CHAT
    from b24_mcp.tools.spec import handle

    connection = Connection(config.load(os.environ), None)
    await anyio.to_thread.run_sync(_import_client_modules)
    await connection.warm()
    await anyio.sleep(PAUSE)
    for which in ("first", "second"):
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        result = await handle(GET_CHAT, connection.client, {"dialogId": "chat5"}, None)
        profiler.stop().save(str(out / f"{which}.pyisession"))
        assert not result.is_error
    await connection.aclose()


def first(webhook_url: str, token: str, ca_pem: Path, processes: int) -> None:
    sessions: dict[str, Session | None] = {"first": None, "second": None}
    env = {
        "PATH": os.environ.get("PATH", ""),
        "B24_WEBHOOK_URL": webhook_url,
        "B24_BOT_ID": "456",
        "B24_BOT_TOKEN": token,
        "SSL_CERT_FILE": str(ca_pem),
        **FAST,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(processes):
            subprocess.run([sys.executable, __file__, "--child", tmp], env=env, cwd=ROOT, check=True, timeout=60)
            for which, before in sessions.items():
                one = Session.load(str(Path(tmp) / f"{which}.pyisession"))
                # Each process's main thread has its own id; one name lets the N profiles merge into one tree.
                one.frame_records = [(["main", *stack[1:]], t) for stack, t in one.frame_records]
                sessions[which] = one if before is None else Session.combine(before, one)
    for which, session in sessions.items():
        assert session is not None
        each = session.duration / processes * 1000
        print(f"=== the {which} get_chat of {processes} fresh processes, {each:.1f} ms each under the profiler")
        shown = {"show_regex": r".*/(httpx|httpcore|anyio|ssl|pydantic)[/.]", "filter_threshold": 0.03}
        print(ConsoleRenderer(unicode=True, processor_options=shown).render(session))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, nargs="?", const=10, default=0, metavar="N")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        anyio.run(child, args.child)
        sys.exit()
    import trustme

    from tests.portal import StandInPortal

    ca = trustme.CA()
    with StandInPortal(tls_ca=ca) as portal:
        assert portal.ca_pem_path is not None
        if args.first:
            first(portal.webhook_url, portal.bot_token, portal.ca_pem_path, args.first)
        else:
            os.environ["SSL_CERT_FILE"] = str(portal.ca_pem_path)
            anyio.run(
                steady,
                config.load(
                    {
                        "B24_WEBHOOK_URL": portal.webhook_url,
                        "B24_BOT_ID": "456",
                        "B24_BOT_TOKEN": portal.bot_token,
                        **FAST,
                    }
                ),
            )
