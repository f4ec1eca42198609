"""OAuth end to end: real b24-mcp processes in OAuth mode against the stand-in portal's rotating token endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.helpers import oauth_env, spawned, text_of
from tests.portal import OAuthSettings, StandInPortal
from tests.values import ROOT

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
    from b24_mcp.oauth import OAuthSession, TokenPair
    from tests.portal import OAuthSettings
    APP = OAuthSettings()

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            s = OAuthSession(http=http, token_url=sys.argv[1], client_id=APP.client_id,
                             client_secret=APP.client_secret, seed=TokenPair(APP.access_token, APP.refresh_token),
                             token_file=Path(sys.argv[2]))
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
        for p in procs:
            p.kill()
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


async def test_expiry_under_concurrent_calls_refreshes_once(portal: StandInPortal, tmp_path: Path) -> None:
    token_file, stderr = tmp_path / "tokens.json", tmp_path / "stderr.log"
    async with spawned(unpaced_env(portal, token_file), stderr) as client:
        (first,) = await calls(client, 1)
        assert not first.is_error, text_of(first)
        portal.expire_access_token()
        results = await calls(client, 10)
    assert all(not r.is_error for r in results), [text_of(r) for r in results]
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    request = portal.requests[0]
    assert request.path == "/rest/imbot.v2.Chat.get" and request.body["auth"] == APP.access_token
    assert "botToken" not in request.body  # OAuth needs none
    saved = json.loads(token_file.read_text())
    assert saved["access_token"] in portal.current_access_tokens
    logged = stderr.read_text() + "".join(r.model_dump_json() for r in results)
    for secret in secrets_of(portal):
        assert secret not in logged

    # A restart with the same (now dead) tokens in the environment continues from the saved pair.
    async with spawned(unpaced_env(portal, token_file), tmp_path / "stderr2.log") as client:
        (again,) = await calls(client, 1)
    assert not again.is_error and portal.refresh_count == 1


async def test_two_server_processes_sharing_a_token_file(portal: StandInPortal, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.json"
    env = unpaced_env(portal, token_file)
    async with spawned(env, tmp_path / "a.log") as a, spawned(env, tmp_path / "b.log") as b:
        assert not (await calls(a, 1))[0].is_error and not (await calls(b, 1))[0].is_error
        portal.expire_access_token()
        results: list[Any] = []

        async def both(client: Any) -> None:
            results.extend(await calls(client, 5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(both, a)
            tg.start_soon(both, b)
    assert len(results) == 10 and all(not r.is_error for r in results), [text_of(r) for r in results]
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
