"""OAuth end to end: real b24-mcp processes in OAuth mode against the stand-in portal's rotating token endpoint."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.helpers import kill_left, oauth_env, spawned_together, text_of
from tests.portal import OAuthSettings, StandInPortal
from tests.values import ROOT, initialize

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

APP = OAuthSettings()


@pytest.fixture
def portal() -> Iterator[StandInPortal]:
    with StandInPortal(oauth=OAuthSettings(), refresh_delay=0.05) as p:
        yield p


WORKER = textwrap.dedent(
    """
    import sys, time, anyio, httpx
    from pathlib import Path
    from b24_mcp.bitrix24.oauth import OAuthSession
    from b24_mcp.bitrix24.token_server import TokenPair
    from b24_mcp.bitrix24.token_file import TokenFile
    from tests.values import OAUTH_ACCESS, OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_REFRESH  # not tests.portal: TLS

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            s = OAuthSession(http=http, token_url=sys.argv[1], client_id=OAUTH_CLIENT_ID,
                             client_secret=OAUTH_CLIENT_SECRET, seed=TokenPair(OAUTH_ACCESS, OAUTH_REFRESH),
                             store=TokenFile(Path(sys.argv[2])))
            stale = await s.access_token()
            Path(sys.argv[3]).touch()            # ready
            while not Path(sys.argv[4]).exists():  # wait for the start signal, so both refresh at once
                await anyio.sleep(0.005)
            print(await s.recover(stale, time.monotonic() + 30))

    anyio.run(main)
    """
)


def test_two_processes_sharing_a_file_refresh_once(portal: StandInPortal, tmp_path: Path) -> None:
    """Three sessions in three processes, one expiry: exactly one refresh, nobody spends a dead token."""
    file, go = tmp_path / "t.json", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                f"{portal.base_url}/oauth/token/",
                str(file),
                str(tmp_path / f"ready{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(3)
    ]
    try:
        for i in range(3):
            for _ in range(3000):
                if (tmp_path / f"ready{i}").exists():
                    break
                anyio.run(anyio.sleep, 0.01)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        kill_left(procs)
    tokens = {out.strip() for out, _ in outputs}
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    assert len(tokens) == 1 and tokens <= portal.current_access_tokens


def unpaced_env(portal: StandInPortal, token_file: Path) -> dict[str, str]:
    # pacing is not what these tests show: let the calls through at once
    return oauth_env(portal, token_file, B24_RATE_LIMIT="50", B24_RATE_BURST="50")


async def calls(client: Any, n: int) -> list[Any]:
    results: list[Any] = []

    async def one() -> None:
        results.append(await client.call_tool("get_chat", {"dialogId": "chat5"}))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
    return results


def secrets_of(portal: StandInPortal) -> list[str]:
    return [APP.client_secret, APP.access_token, APP.refresh_token, *portal.current_access_tokens]


async def test_two_server_processes_sharing_a_token_file(portal: StandInPortal, tmp_path: Path) -> None:
    """Two servers, one token file, an expiry under concurrent calls in both: one refresh and no invalid_grant;
    the renewed pair saved; calls signed with `auth`, no botToken; no secret in either server's DEBUG log.
    (A restart with stale tokens in the environment is test_oauth's, in process: the file decides there too.)"""
    token_file = tmp_path / "tokens.json"
    env = unpaced_env(portal, token_file)
    async with spawned_together(env, tmp_path / "a.log", tmp_path / "b.log") as (a, b):
        results = [*(await calls(a, 1)), *(await calls(b, 1))]
        portal.expire_access_token()

        async def five(client: Any) -> None:
            results.extend(await calls(client, 5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(five, a)
            tg.start_soon(five, b)
    assert len(results) == 12 and all(not r.is_error for r in results), [text_of(r) for r in results]
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    request = portal.requests[0]
    assert request.path == "/rest/imbot.v2.Chat.get" and request.body["auth"] == APP.access_token
    assert "botToken" not in request.body  # OAuth needs none
    saved = json.loads(token_file.read_text())
    assert saved["access_token"] in portal.current_access_tokens
    logged = "".join((tmp_path / f"{x}.log").read_text() for x in "ab") + "".join(r.model_dump_json() for r in results)
    assert "imbot.v2.Chat.get" in logged  # DEBUG did log each call...
    for secret in secrets_of(portal):  # ...and no secret
        assert secret not in logged


CHAT = "chat5"
CALL_AFTER_EXPIRY = [
    initialize("rotation-test"),
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "get_chat", "arguments": {"dialogId": "chat5"}},
    },
]


def test_a_server_ended_mid_renewal_saves_the_rotated_pair_first(tmp_path: Path) -> None:
    """The host ends the server (stdin closed, SIGTERM, SIGINT) while the token server has rotated the pair and not
    yet answered: each process waits for the answer and saves it before it exits, so the next start goes on without
    a re-authorisation. The three run side by side (each start-up is ~1 s of CPU)."""
    ends = ["stdin closed", "SIGTERM", "SIGINT"]
    with ExitStack() as stack:
        portals = [stack.enter_context(StandInPortal(oauth=OAuthSettings())) for _ in ends]
        procs = []
        for i, portal in enumerate(portals):
            portal.after_rotation, portal.rotated_delay = "late", 0.5
            portal.expire_access_token()  # the first call is rejected and renews
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "b24_mcp"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=stack.enter_context((tmp_path / f"stderr{i}").open("w")),
                    env=oauth_env(portal, tmp_path / f"t{i}.json"),
                    cwd=ROOT,
                )
            )
        try:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("".join(json.dumps(m) + "\n" for m in CALL_AFTER_EXPIRY).encode())
                proc.stdin.flush()
            for i, (end, portal, proc) in enumerate(zip(ends, portals, procs, strict=True)):
                assert portal.rotated.wait(60), (tmp_path / f"stderr{i}").read_text()
                if end == "stdin closed":
                    assert proc.stdin is not None
                    proc.stdin.close()
                else:
                    proc.send_signal(getattr(signal, end))
            for proc in procs:
                proc.wait(30)
        finally:
            kill_left(procs)
        for i, (end, portal) in enumerate(zip(ends, portals, strict=True)):
            saved = json.loads((tmp_path / f"t{i}.json").read_text())
            assert saved["refresh_token"] in portal.standin.refresh_tokens, (end, (tmp_path / f"stderr{i}").read_text())
            assert portal.invalid_grants == 0
