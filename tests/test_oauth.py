"""OAuth sessions: one refresh per expiry, in a process and across processes; the token file; failures.

A rotating token endpoint (the stand-in portal's, over real loopback HTTP, or a MockTransport) kills each
refresh token once used, exactly as Bitrix24 does, so a double refresh shows up as invalid_grant.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import anyio
import httpx
import pytest

from b24_mcp import settings as config
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.oauth import OAuthSession, Stored
from b24_mcp.bitrix24.token_file import TokenFile
from b24_mcp.bitrix24.token_server import TokenPair
from b24_mcp.errors import AuthError, ConfigError
from b24_mcp.logs import fingerprint, redact
from b24_mcp.paths import check_token_path, default_token_file, lock_file_of
from tests.portal import OAuthSettings, StandInPortal
from tests.values import OAUTH_ACCESS, OAUTH_CLIENT_SECRET, OAUTH_REFRESH

pytestmark = pytest.mark.anyio

SECRET = OAUTH_CLIENT_SECRET
SEED = TokenPair(OAUTH_ACCESS, OAUTH_REFRESH)
TOKEN_URL = "https://oauth.example.test/oauth/token/"


def soon(seconds: float = 30.0) -> float:
    """A deadline, as the client passes it to recover()."""
    return time.monotonic() + seconds


class Rotating:
    """A MockTransport handler for the token endpoint that rotates like Bitrix24: each refresh kills the last pair."""

    def __init__(self, delay: float = 0.0) -> None:
        self.refresh_token = SEED.refresh_token
        self.requests = 0
        self.invalid_grants = 0
        self.delay = delay

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.delay:
            await anyio.sleep(self.delay)
        if dict(parse_qsl(request.content.decode()))["refresh_token"] != self.refresh_token:
            self.invalid_grants += 1
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.refresh_token = f"refreshMOCK{self.requests:04d}"
        return httpx.Response(
            200, json={"access_token": f"accessMOCK{self.requests:04d}", "refresh_token": self.refresh_token}
        )

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


@pytest.fixture
def portal() -> Iterator[StandInPortal]:
    with StandInPortal(oauth=OAuthSettings(), refresh_delay=0.02) as p:  # slow enough for callers to overlap
        yield p


def session(
    portal: StandInPortal | str,
    file: Path,
    http: httpx.AsyncClient,
    seed: TokenPair = SEED,
    store: Callable[[Path], TokenFile] = TokenFile,
) -> OAuthSession:
    """A session against the stand-in portal's token endpoint, or against `portal` as a token URL, over the token
    file (or another `store` of it)."""
    return OAuthSession(
        http=http,
        token_url=portal if isinstance(portal, str) else f"{portal.base_url}/oauth/token/",
        client_id="local.test.app",
        client_secret=SECRET,
        seed=seed,
        store=store(file),
    )


async def test_a_dead_refresh_token_asks_to_reauthorise_and_keeps_the_file(tmp_path: Path) -> None:
    """invalid_grant (the app was uninstalled, or the token aged out): say to re-authorise; keep the file."""
    file = tmp_path / "t.json"
    file.write_text("keep me")  # whatever is there must survive a failed refresh
    server = Rotating()
    server.refresh_token = "no-longer-the-seed"
    async with server.client() as http:
        with pytest.raises(AuthError) as info:
            await session(TOKEN_URL, file, http).recover(SEED.access_token, soon())
    text = str(info.value)
    assert "invalid_grant" in text and "re-authorise" in text and "B24_REFRESH_TOKEN" in text
    assert file.read_text() == "keep me" and server.invalid_grants == 1


async def test_concurrent_refreshes_in_one_process_are_one(portal: StandInPortal, tmp_path: Path) -> None:
    async with make_http(5.0) as http:
        s = session(portal, tmp_path / "t.json", http)
        stale = await s.access_token()
        tokens: list[str] = []

        async def one() -> None:
            tokens.append(await s.recover(stale, soon()))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    assert len(set(tokens)) == 1 and tokens[0] in portal.current_access_tokens


async def test_two_sessions_sharing_a_file_refresh_once(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with make_http(5.0) as a_http, make_http(5.0) as b_http:
        a, b = session(portal, file, a_http), session(portal, file, b_http)
        stale = await a.access_token()
        assert stale == await b.access_token()
        results: dict[str, str] = {}

        async def go(name: str, s: OAuthSession) -> None:
            results[name] = await s.recover(stale, soon())

        async with anyio.create_task_group() as tg:
            tg.start_soon(go, "a", a)
            tg.start_soon(go, "b", b)
    assert portal.refresh_count == 1 and portal.invalid_grants == 0
    assert results["a"] == results["b"]


async def test_restart_with_stale_environment_uses_the_saved_pair(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with make_http(5.0) as http:
        first = session(portal, file, http)
        fresh = await first.recover(await first.access_token(), soon())
        restarted = session(portal, file, http)  # same (now dead) tokens in the environment
        assert await restarted.access_token() == fresh
    assert portal.refresh_count == 1


async def test_new_environment_tokens_win_over_an_old_file(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with make_http(5.0) as http:
        first = session(portal, file, http)
        await first.recover(await first.access_token(), soon())
        reauthorised = TokenPair("accessFROMREAUTH", "refreshFROMREAUTH")
        assert await session(portal, file, http, seed=reauthorised).access_token() == "accessFROMREAUTH"


async def test_token_file_is_private_and_written_whole(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "new-dir" / "t.json"
    async with make_http(5.0) as http:
        s = session(portal, file, http)
        await s.recover(await s.access_token(), soon())
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in file.parent.iterdir()) == ["t.json", "t.json.lock"]  # no temp files left
    saved = json.loads(file.read_text())
    assert saved["seed"] == fingerprint(SEED.refresh_token)
    assert saved["refresh_token"] != SEED.refresh_token and saved["access_token"] in portal.current_access_tokens


class Died(Exception):
    pass


class DiesBeforeSaving(TokenFile):
    async def write(self, new: Stored, replaces: str, *, locked: bool) -> bool | None:
        raise Died  # the process dies between receiving the pair and saving it


async def test_crash_before_saving_keeps_the_old_file(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with make_http(5.0) as http:
        first = session(portal, file, http)
        await first.recover(await first.access_token(), soon())
        before = file.read_text()
        portal.expire_access_token()
        crashing = session(portal, file, http, store=DiesBeforeSaving)
        with pytest.raises(Died):
            await crashing.recover(await crashing.access_token(), soon())
        assert file.read_text() == before  # intact and readable, never half-written
        # Bitrix24 has already killed that refresh token: the next process gets a clear, actionable error.
        survivor = session(portal, file, http)
        with pytest.raises(AuthError) as info:
            await survivor.recover(await survivor.access_token(), soon())
    assert info.value.code == "invalid_grant" and "B24_REFRESH_TOKEN" in str(info.value)
    assert file.read_text() == before  # and the file is still not destroyed


async def test_crash_right_after_saving_loses_nothing(portal: StandInPortal, tmp_path: Path) -> None:
    file = tmp_path / "t.json"
    async with make_http(5.0) as http:
        s = session(portal, file, http)
        await s.recover(await s.access_token(), soon())  # saved before use; suppose the process dies now
        restarted = session(portal, file, http)
        assert await restarted.access_token() in portal.current_access_tokens
    assert portal.refresh_count == 1


async def test_invalid_client_names_the_variables(tmp_path: Path) -> None:
    with StandInPortal(oauth=OAuthSettings(client_secret="other")) as portal:
        async with make_http(5.0) as http:
            s = session(portal, tmp_path / "t.json", http)
            with pytest.raises(AuthError) as info:
                await s.recover(await s.access_token(), soon())
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
            await s.recover(SEED.access_token, soon())
    assert words in str(info.value) and "oauth.example.test" in str(info.value)
    assert "B24_WEBHOOK_URL" not in str(info.value)
    assert not (tmp_path / "t.json").exists()


async def test_unreachable_token_endpoint(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        s = session("https://oauth.example.test/oauth/token/", tmp_path / "t.json", http)
        with pytest.raises(AuthError, match=r"Could not reach the OAuth server oauth\.example\.test"):
            await s.recover(SEED.access_token, soon())


@pytest.mark.parametrize(
    ("answer", "said"),
    [  # made when the test runs, not when every worker collects the module
        (lambda: httpx.Response(200, content=b'{"access_token": "' + b"a" * 200_000 + b'"}'), "larger than 64 KiB"),
        (  # 5 KB on the wire, 5 MB inflated
            lambda: httpx.Response(200, content=gzip.compress(b" " * 5_000_000), headers={"Content-Encoding": "gzip"}),
            "larger than 64 KiB",
        ),
        (lambda: httpx.Response(200, content=b"[" * 60_000), "something other than a JSON object"),
        (
            lambda: httpx.Response(200, content=b'{"access_token": NaN, "refresh_token": "r"}'),
            "without a new token pair",
        ),
        (
            lambda: httpx.Response(
                400, json={"error": "\x1b[31mSTOP\x1b[0m all", "error_description": "x\x1b]0;t\x07" * 99}
            ),
            "refused to renew the access token: (an unreadable code) x",
        ),
        (lambda: httpx.Response(302, headers={"Location": "https://elsewhere.example/"}), "https://elsewhere.example"),
    ],
    ids=["large", "gzip bomb", "nested", "NaN", "escapes", "redirect"],
)
async def test_a_hostile_token_server_is_read_with_a_bound(
    tmp_path: Path, answer: Callable[[], httpx.Response], said: str
) -> None:
    """The OAuth server's answer is read like the portal's: bounded after decompression, parsed with a nesting
    bound, no NaN, its code and description cleaned, redirects not followed."""
    response = answer()
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: response)) as http:
        with pytest.raises(AuthError) as info:
            await session(TOKEN_URL, tmp_path / "t.json", http).recover(SEED.access_token, soon())
    assert said in str(info.value)
    assert "\x1b" not in str(info.value) and len(str(info.value)) < 600


async def test_corrupt_file_is_ignored_then_replaced(
    portal: StandInPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "t.json"
    file.write_text("{not json")
    async with make_http(5.0) as http:
        s = session(portal, file, http)
        assert await s.access_token() == SEED.access_token
        assert file.read_text() == "{not json"  # not destroyed on read
        await s.recover(SEED.access_token, soon())
    assert json.loads(file.read_text())["access_token"] in portal.current_access_tokens
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"B24_TOKEN_FILE {file} cannot be read" in warning and "left as it is" in warning
    assert "B24_ACCESS_TOKEN" in warning and "B24_WEBHOOK_URL" not in warning


async def test_no_secret_in_logs_errors_or_reprs(
    portal: StandInPortal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    async with make_http(5.0) as http:
        s = session(portal, tmp_path / "t.json", http)
        await s.recover(SEED.access_token, soon())
        texts.append(repr(s._current))
        portal.expire_access_token()
        dead = session(portal, tmp_path / "other.json", http)  # spends the seed's refresh token again
        with pytest.raises(AuthError) as info:
            await dead.recover(SEED.access_token, soon())
        texts.append(str(info.value))
    texts.append(caplog.text)
    secrets = [SECRET, SEED.access_token, SEED.refresh_token, *portal.current_access_tokens]
    for text in texts:
        for secret in secrets:
            assert secret not in text


async def test_renewed_tokens_are_masked_wherever_they_are_quoted(portal: StandInPortal, tmp_path: Path) -> None:
    async with make_http(5.0) as http:
        s = session(portal, tmp_path / "t.json", http)
        fresh = await s.recover(SEED.access_token, soon())
    assert fresh not in redact(f"a message that quotes {fresh} by mistake")
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["refresh_token"] not in redact(f"the new refresh token is {saved['refresh_token']}")


def test_default_token_file_is_per_portal_and_app() -> None:
    a = default_token_file("acme.bitrix24.com", "local.1")
    assert a != default_token_file("acme.bitrix24.com", "local.2")
    assert a != default_token_file("other.bitrix24.com", "local.1")
    assert "b24-mcp" in str(a) and "local.1" not in a.name
    assert os.path.isabs(a)


# -- recovery: a rejected token is most often one another window already replaced ---------------------------------


async def test_recover_takes_the_pair_another_session_renewed(tmp_path: Path) -> None:
    from filelock import FileLock

    file, server = tmp_path / "t.json", Rotating()
    async with server.client() as http:
        a, b = session(TOKEN_URL, file, http), session(TOKEN_URL, file, http)
        old = await b.access_token()
        fresh = await a.recover(await a.access_token(), soon())  # A renews; B still holds the old token
        assert server.requests == 1
        hung = FileLock(lock_file_of(file), thread_local=False)
        hung.acquire()  # and a hung process holds the lock: B needs neither it nor the token server
        try:
            assert await b.recover(old, soon(0.2)) == fresh
        finally:
            hung.release()
        assert await b.access_token() == fresh
    assert server.requests == 1


# -- a spent refresh token is never thrown away -----------------------------------------------------------------------


def no_secret_in(text: str, server: Rotating) -> None:
    for secret in (SECRET, SEED.access_token, SEED.refresh_token, server.refresh_token, "accessMOCK"):
        assert secret not in text


async def test_a_pair_that_cannot_be_saved_answers_and_is_saved_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    file, server = tmp_path / "t.json", Rotating()
    replace = os.replace

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async with server.client() as http:
        s = session(TOKEN_URL, file, http)
        monkeypatch.setattr(os, "replace", full_disk)
        fresh = await s.recover(SEED.access_token, soon())  # the call is answered
        assert fresh == "accessMOCK0001" and not file.exists()
        assert await s.access_token() == fresh  # the save is retried, and fails again, quietly
        assert await s.recover(SEED.access_token, soon()) == fresh  # a late caller: no second refresh
        monkeypatch.setattr(os, "replace", replace)
        assert await s.access_token() == fresh  # the retry succeeds
        assert json.loads(file.read_text())["refresh_token"] == server.refresh_token
        assert await session(TOKEN_URL, file, http).access_token() == fresh  # and a restart continues from it
    assert server.requests == 1
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(file) in warning and os.strerror(errno.ENOSPC) in warning and "B24_TOKEN_FILE" in warning
    no_secret_in(caplog.text, server)


async def test_a_spent_pair_left_in_the_file_is_never_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file, server = tmp_path / "t.json", Rotating()

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    async with server.client() as http:
        s = session(TOKEN_URL, file, http)
        first = await s.recover(SEED.access_token, soon())  # saved
        monkeypatch.setattr(os, "replace", denied)
        second = await s.recover(first, soon())  # not saved: the file still holds the first, dead pair
        third = await s.recover(second, soon())  # renews the second; never goes back to the file's first
    assert (first, second, third) == ("accessMOCK0001", "accessMOCK0002", "accessMOCK0003")
    assert server.requests == 3 and server.invalid_grants == 0


async def test_a_read_only_directory_still_renews_once_and_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests run as root, which ignores chmod 0o500: the OS errors a read-only directory gives are simulated.
    import filelock

    file, server = tmp_path / "t.json", Rotating(delay=0.05)

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    monkeypatch.setattr(os, "replace", read_only)
    tokens: list[str] = []
    async with server.client() as http:
        s = session(TOKEN_URL, file, http)

        async def one() -> None:
            tokens.append(await s.recover(SEED.access_token, soon()))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(one)
        assert await s.access_token() == tokens[0]
    assert server.requests == 1 and set(tokens) == {"accessMOCK0001"} and not file.exists()
    lock_warning, save_warning = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(lock_file_of(file)) in lock_warning and os.strerror(errno.EROFS) in lock_warning
    assert str(file) in save_warning and os.strerror(errno.EROFS) in save_warning
    no_secret_in(caplog.text, server)


# -- the token file and its lock are in a safe place ------------------------------------------------------------------


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        check_token_path(path)
    message = str(info.value)
    assert message.startswith(f"B24_TOKEN_FILE {path} ") and "\n" not in message
    return message


def test_a_directory_others_can_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "mode 0777" in refusal(shared / "t.json")
    assert "mode 0777" in refusal(shared / "not-yet" / "t.json")  # the nearest existing ancestor counts
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace our files
    check_token_path(shared / "t.json")
    check_token_path(shared / "not-yet" / "t.json")
    shared.chmod(0o775)
    assert "mode 0775" in refusal(shared / "t.json")


def test_files_of_another_user_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "t.json").write_text("{}")
    check_token_path(private / "t.json")
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)
    assert "the directory belongs to another user" in refusal(private / "t.json")
    if me != 0:
        return  # only root can give a file away, to show the file checks
    monkeypatch.setattr(os, "getuid", lambda: me)
    lock = lock_file_of(private / "t.json")
    lock.touch()
    os.chown(lock, me + 1, -1)
    assert "its lock file" in refusal(private / "t.json")
    os.chown(private / "t.json", me + 1, -1)
    assert "the token file" in refusal(private / "t.json")


def test_settings_refuse_an_unsafe_token_file(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    env = {
        "B24_PORTAL_URL": "https://acme.bitrix24.com",
        "B24_ACCESS_TOKEN": SEED.access_token,
        "B24_REFRESH_TOKEN": SEED.refresh_token,
        "B24_CLIENT_ID": "local.test.app",
        "B24_CLIENT_SECRET": SECRET,
        "B24_TOKEN_FILE": str(shared / "t.json"),
    }
    with pytest.raises(ConfigError, match=r"^B24_TOKEN_FILE .*not in a safe place"):
        config.load(env)
    shared.chmod(0o700)
    assert isinstance(config.load(env).auth, config.OAuthConfig)


# -- the renewal is inside the call's deadline ------------------------------------------------------------------------


async def test_a_slow_token_server_ends_at_the_deadline(tmp_path: Path) -> None:
    server = Rotating(delay=30)
    async with server.client() as http:
        s = session(TOKEN_URL, tmp_path / "t.json", http)
        with anyio.fail_after(10), pytest.raises(AuthError) as info:  # the server would take 30 s
            await s.recover(SEED.access_token, time.monotonic() + 0.1)
    assert "B24_TIMEOUT" in str(info.value) and "oauth.example.test" in str(info.value)


async def test_a_held_lock_ends_at_the_deadline_and_is_never_to_be_deleted(tmp_path: Path) -> None:
    from filelock import FileLock

    file, server = tmp_path / "t.json", Rotating()
    held = FileLock(lock_file_of(file), thread_local=False)
    held.acquire()  # another process, refreshing or hung
    try:
        async with server.client() as http:
            s = session(TOKEN_URL, file, http)
            with anyio.fail_after(10), pytest.raises(AuthError) as info:  # the lock is held until `finally`
                await s.recover(SEED.access_token, time.monotonic() + 0.1)
    finally:
        held.release()
    message = str(info.value)
    assert "B24_TIMEOUT" in message and "oauth.example.test" in message and "B24_TOKEN_FILE" in message
    assert "released when its process ends" in message
    assert "delete" not in message.lower() and "remove" not in message.lower()
    assert server.requests == 0


async def test_a_caller_waiting_for_another_renewal_keeps_its_own_deadline(tmp_path: Path) -> None:
    server = Rotating(delay=0.2)
    async with server.client() as http:
        s = session(TOKEN_URL, tmp_path / "t.json", http)
        results: dict[str, str] = {}

        async def patient() -> None:
            results["patient"] = await s.recover(SEED.access_token, soon())

        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            await anyio.sleep(0.02)  # the patient caller is renewing
            with pytest.raises(AuthError, match="B24_TIMEOUT"):
                await s.recover(SEED.access_token, time.monotonic() + 0.05)
            assert "patient" not in results  # it gave up at its own deadline, while the renewal went on
    assert results["patient"] == "accessMOCK0001" and server.requests == 1


# -- a rotated pair is kept, whatever else the answer says --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"access_token": "accessNEW", "refresh_token": "refreshNEW", "expires_in": NaN}',
        b'{"access_token": "accessNEW", "refresh_token": "refreshNEW", "expires": Infinity, "expires_in": "soon"}',
        b'{"error": "server_error", "access_token": "accessNEW", "refresh_token": "refreshNEW", "expires_in": 3600}',
    ],
    ids=["NaN expires_in", "bad expiries", "error beside tokens"],
)
async def test_a_pair_in_an_odd_answer_is_kept(tmp_path: Path, body: bytes) -> None:
    """The server has rotated: throwing its pair away for a bad expiry or a stray `error` would lock the user out."""
    file = tmp_path / "t.json"
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body))) as h:
        assert await session(TOKEN_URL, file, h).recover(SEED.access_token, soon()) == "accessNEW"
    saved = json.loads(file.read_text())
    assert saved["refresh_token"] == "refreshNEW"
    assert saved["expires_at"] is None or (isinstance(saved["expires_at"], float) and saved["expires_at"] > time.time())


async def test_null_tokens_in_the_file_are_no_pair(tmp_path: Path) -> None:
    """A file with `null` tokens is unreadable, not a pair whose tokens are the string "None"."""
    file = tmp_path / "t.json"
    file.write_text(json.dumps({"seed": fingerprint(SEED.refresh_token), "access_token": None, "refresh_token": None}))
    async with httpx.AsyncClient() as http:
        assert await session(TOKEN_URL, file, http).access_token() == SEED.access_token


async def test_an_error_description_is_masked_before_it_is_cut(tmp_path: Path) -> None:
    """The client secret quoted at the 200-character cut is masked whole, not shown in part."""
    said = "x" * 180 + " " + SECRET + " and more"
    answer = httpx.Response(400, json={"error": "server_error", "error_description": said})
    redact.add([SECRET])
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda request: answer)) as http:
        with pytest.raises(AuthError) as info:
            await session(TOKEN_URL, tmp_path / "t.json", http).recover(SEED.access_token, soon())
    assert SECRET[:8] not in str(info.value)


async def test_the_lock_file_is_private_and_a_busy_lock_names_its_owner(tmp_path: Path) -> None:
    """0600: another user cannot open it, so cannot hold it. An older 0644 lock file is made 0600 at first use."""
    from filelock import FileLock

    file, server = tmp_path / "t.json", Rotating()
    lock = lock_file_of(file)
    lock.touch(mode=0o644)
    lock.chmod(0o644)
    async with server.client() as http:
        await session(TOKEN_URL, file, http).recover(SEED.access_token, soon())
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        held = FileLock(lock, thread_local=False)
        held.acquire()
        try:
            with pytest.raises(AuthError) as info:
                await session(TOKEN_URL, file, http).recover("accessMOCK0001", time.monotonic() + 0.1)
        finally:
            held.release()
    assert "the file is yours, mode 0600" in str(info.value) and "another b24-mcp process" not in str(info.value)
