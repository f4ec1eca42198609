"""OAuth sessions: one refresh per expiry, in a process and across processes; the token file; failures.

A rotating token endpoint (the stand-in portal's, over real loopback HTTP, or a MockTransport) kills each
refresh token once used, exactly as Bitrix24 does, so a double refresh shows up as invalid_grant.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from b24_mcp.errors import AuthError
from b24_mcp.logs import redact
from b24_mcp.oauth import OAuthSession, TokenPair, default_token_file, fingerprint
from tests.e2e import ROOT
from tests.portal import OAuthSettings, StandInPortal

pytestmark = pytest.mark.anyio

SECRET = "clientSECRET789"
SEED = TokenPair("accessTOKEN0001", "refreshTOKEN0001")


@pytest.fixture
def portal() -> Iterator[StandInPortal]:
    with StandInPortal(oauth=OAuthSettings(), refresh_delay=0.05) as p:
        yield p


def session(portal: StandInPortal | str, file: Path, http: httpx.AsyncClient, seed: TokenPair = SEED) -> OAuthSession:
    """A session against the stand-in portal's token endpoint, or against `portal` as a token URL."""
    return OAuthSession(
        http=http,
        token_url=portal if isinstance(portal, str) else f"{portal.base_url}/oauth/token/",
        client_id="local.test.app",
        client_secret=SECRET,
        seed=seed,
        token_file=file,
    )


async def test_concurrent_refreshes_in_one_process_are_one(portal: StandInPortal, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        s = session(portal, tmp_path / "t.json", http)
        stale = await s.access_token()
        tokens: list[str] = []

        async def one() -> None:
            tokens.append(await s.refresh(stale))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    assert len(set(tokens)) == 1 and tokens[0] in portal.current_access_tokens


async def test_two_sessions_sharing_a_file_refresh_once(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with httpx.AsyncClient() as a_http, httpx.AsyncClient() as b_http:
        a, b = session(portal, file, a_http), session(portal, file, b_http)
        stale = await a.access_token()
        assert stale == await b.access_token()
        results: dict[str, str] = {}

        async def go(name: str, s: OAuthSession) -> None:
            results[name] = await s.refresh(stale)

        async with anyio.create_task_group() as tg:
            tg.start_soon(go, "a", a)
            tg.start_soon(go, "b", b)
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    assert results["a"] == results["b"]


WORKER = textwrap.dedent(
    """
    import sys, anyio, httpx
    from pathlib import Path
    from b24_mcp.oauth import OAuthSession, TokenPair

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            s = OAuthSession(http=http, token_url=sys.argv[1], client_id="local.test.app",
                             client_secret="clientSECRET789", seed=TokenPair("accessTOKEN0001", "refreshTOKEN0001"),
                             token_file=Path(sys.argv[2]))
            stale = await s.access_token()
            Path(sys.argv[3]).touch()            # ready
            while not Path(sys.argv[4]).exists():  # wait for the start signal, so both refresh at once
                await anyio.sleep(0.005)
            print(await s.refresh(stale))

    anyio.run(main)
    """
)


def test_two_processes_sharing_a_file_refresh_once(portal: StandInPortal, tmp_path: Path) -> None:
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


async def test_restart_with_stale_environment_uses_the_saved_pair(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with httpx.AsyncClient() as http:
        first = session(portal, file, http)
        fresh = await first.refresh(await first.access_token())
        restarted = session(portal, file, http)  # same (now dead) tokens in the environment
        assert await restarted.access_token() == fresh
    assert portal.refresh_count == 1


async def test_new_environment_tokens_win_over_an_old_file(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with httpx.AsyncClient() as http:
        first = session(portal, file, http)
        await first.refresh(await first.access_token())
        reauthorised = TokenPair("accessFROMREAUTH", "refreshFROMREAUTH")
        assert await session(portal, file, http, seed=reauthorised).access_token() == "accessFROMREAUTH"


async def test_token_file_is_private_and_written_whole(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "new-dir" / "t.json"
    async with httpx.AsyncClient() as http:
        s = session(portal, file, http)
        await s.refresh(await s.access_token())
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in file.parent.iterdir()) == ["t.json", "t.json.lock"]  # no temp files left
    saved = json.loads(file.read_text())
    assert saved["seed"] == fingerprint(SEED.refresh_token)
    assert saved["refresh_token"] != SEED.refresh_token and saved["access_token"] in portal.current_access_tokens


async def test_crash_before_saving_keeps_the_old_file(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with httpx.AsyncClient() as http:
        first = session(portal, file, http)
        await first.refresh(await first.access_token())
        before = file.read_text()
        portal.expire_access_token()
        crashing = session(portal, file, http)

        def crash(pair: TokenPair) -> None:
            raise KeyboardInterrupt  # the process dies between receiving and saving

        crashing._after_receive = crash
        with pytest.raises(KeyboardInterrupt):
            await crashing.refresh(await crashing.access_token())
        assert file.read_text() == before  # intact and readable, never half-written
        # Bitrix24 has already killed that refresh token: the next process gets a clear, actionable error.
        survivor = session(portal, file, http)
        with pytest.raises(AuthError) as info:
            await survivor.refresh(await survivor.access_token())
    assert info.value.code == "invalid_grant" and "B24_REFRESH_TOKEN" in str(info.value)
    assert file.read_text() == before  # and the file is still not destroyed


async def test_crash_right_after_saving_loses_nothing(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with httpx.AsyncClient() as http:
        s = session(portal, file, http)
        await s.refresh(await s.access_token())  # saved before use; suppose the process dies now
        restarted = session(portal, file, http)
        assert await restarted.access_token() in portal.current_access_tokens
    assert portal.refresh_count == 1


async def test_invalid_client_names_the_variables(tmp_path: Path) -> None:
    with StandInPortal(oauth=OAuthSettings(client_secret="other")) as portal:
        async with httpx.AsyncClient() as http:
            s = session(portal, tmp_path / "t.json", http)
            with pytest.raises(AuthError) as info:
                await s.refresh(await s.access_token())
    assert info.value.code == "invalid_client"
    assert "B24_CLIENT_ID" in str(info.value) and "B24_CLIENT_SECRET" in str(info.value)


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (httpx.Response(502, content=b"<html>bad gateway</html>"), "HTTP 502"),
        (httpx.Response(200, json={"access_token": "only-one"}), "without a new token pair"),
        (httpx.Response(400, json={"error": "PAYMENT_REQUIRED", "error_description": "pay"}), "PAYMENT_REQUIRED"),
    ],
)
async def test_bad_token_endpoint_answers(tmp_path: Path, response: httpx.Response, words: str) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: response)) as http:
        s = session("https://oauth.example.test/oauth/token/", tmp_path / "t.json", http)
        with pytest.raises(AuthError) as info:
            await s.refresh(SEED.access_token)
    assert words in str(info.value) and "oauth.example.test" in str(info.value)
    assert not (tmp_path / "t.json").exists()


async def test_unreachable_token_endpoint(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        s = session("https://oauth.example.test/oauth/token/", tmp_path / "t.json", http)
        with pytest.raises(AuthError, match=r"Could not reach the OAuth server oauth\.example\.test"):
            await s.refresh(SEED.access_token)


async def test_corrupt_file_is_ignored_then_replaced(
    portal: StandInPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "t.json"
    file.write_text("{not json")
    async with httpx.AsyncClient() as http:
        s = session(portal, file, http)
        assert await s.access_token() == SEED.access_token
        assert file.read_text() == "{not json"  # not destroyed on read
        await s.refresh(SEED.access_token)
    assert json.loads(file.read_text())["access_token"] in portal.current_access_tokens
    assert "unreadable token file" in caplog.text


async def test_lock_timeout_names_the_file(portal: StandInPortal, tmp_path: Path) -> None:
    from filelock import FileLock

    file = tmp_path / "t.json"
    held = FileLock(f"{file}.lock", thread_local=False)
    held.acquire()
    try:
        async with httpx.AsyncClient() as http:
            s = session(portal, file, http)
            s._lock_timeout = 0.2
            with pytest.raises(AuthError, match="B24_TOKEN_FILE"):
                await s.refresh(SEED.access_token)
    finally:
        held.release()
    assert portal.refresh_count == 0


async def test_no_secret_in_logs_errors_or_reprs(
    portal: StandInPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with httpx.AsyncClient() as http:
        s = session(portal, tmp_path / "t.json", http)
        await s.refresh(SEED.access_token)
        texts.append(repr(s._current))
        portal.expire_access_token()
        dead = session(portal, tmp_path / "other.json", http)  # spends the seed's refresh token again
        with pytest.raises(AuthError) as info:
            await dead.refresh(SEED.access_token)
        texts.append(str(info.value))
    texts.append(caplog.text)
    secrets = [SECRET, SEED.access_token, SEED.refresh_token, *portal.current_access_tokens]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def test_renewed_tokens_are_masked_wherever_they_are_quoted(portal: StandInPortal, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as http:
        s = session(portal, tmp_path / "t.json", http)
        fresh = await s.refresh(SEED.access_token)
    assert fresh not in redact(f"a message that quotes {fresh} by mistake")
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["refresh_token"] not in redact(f"the new refresh token is {saved['refresh_token']}")


def test_default_token_file_is_per_portal_and_app() -> None:
    a = default_token_file("acme.bitrix24.com", "local.1")
    assert a != default_token_file("acme.bitrix24.com", "local.2")
    assert a != default_token_file("other.bitrix24.com", "local.1")
    assert "b24-mcp" in str(a) and "local.1" not in a.name
    assert os.path.isabs(a)
