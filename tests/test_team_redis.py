"""State shared through a real Redis (`B24_REDIS_URL`): the GCRA bucket, portal-wide blocks, the OAuth pair.

Each "replica" here is a `B24Client` with its own Redis connection pool and HTTP client, as a process would have;
they share only Redis and the loopback stand-in portal. Marked e2e: it starts a real redis-server. The replicas
as separate processes are tests/e2e/test_team.py's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
import redis

from b24_mcp import settings as config
from b24_mcp.app import make_auth, shared_portal
from b24_mcp.bitrix24.auth import OAuth
from b24_mcp.bitrix24.client import B24Client
from b24_mcp.bitrix24.network import make_http
from b24_mcp.bitrix24.oauth import OAuthSession, Stored
from b24_mcp.bitrix24.pacing import LeakyBucket
from b24_mcp.bitrix24.redis_state import Redis, RedisBucket, RedisPairs, SharedPortal
from b24_mcp.bitrix24.token_server import TokenPair
from b24_mcp.errors import PortalError, UpstreamError
from b24_mcp.logs import fingerprint
from b24_mcp.team import parse_redis_url
from b24_mcp.tools.get_chat import read_chat
from tests.portal import Fault, OAuthSettings, StandInPortal, rotated
from tests.redis_server import RedisServer, SlowProxy, free_port
from tests.values import webhook_vars

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]  # e2e: a real redis-server process
APP = OAuthSettings()


@asynccontextmanager
async def bucket(url: str, rate: float, burst: int) -> AsyncIterator[RedisBucket]:
    shared = Redis(parse_redis_url(url))
    try:
        yield RedisBucket(shared, "b24-mcp:test:pace", rate, burst)
    finally:
        await shared.aclose()


async def waits(b: RedisBucket, n: int, max_wait: float = float("inf")) -> list[float | None]:
    return [await b.reserve(max_wait) for _ in range(n)]


async def test_the_redis_bucket_paces_as_the_in_process_one(redis_url: str) -> None:
    local = LeakyBucket(rate=2, burst=5, clock=lambda: 0.0)  # a frozen clock: the ideal
    async with bucket(redis_url, 2, 5) as shared:
        got = await waits(shared, 8)
    assert got == pytest.approx([local.reserve() for _ in range(8)], abs=0.05)  # 0 0 0 0 .5 1 1.5 2


async def test_too_far_takes_nothing_release_gives_back_saturate_fills(redis_url: str) -> None:
    local = LeakyBucket(rate=2, burst=3, clock=lambda: 0.0)  # the same steps on the in-process bucket
    async with bucket(redis_url, 2, 3) as b:
        assert await waits(b, 2) == [local.reserve(), local.reserve()] == [0, 0]
        assert await b.reserve(max_wait=0.1) is None is local.reserve(max_wait=0.1)  # 0.5 s away: nothing taken
        assert await b.reserve() == pytest.approx(local.reserve(), abs=0.05) == 0.5  # the refusal took no slot
        await b.release()
        local.release()
        assert await b.reserve() == pytest.approx(local.reserve(), abs=0.05) == 0.5  # the released slot again
        await b.saturate()  # the portal said it is full
        local.saturate()
        assert await b.reserve() == pytest.approx(local.reserve(), abs=0.05) == 1.0


async def test_two_replicas_draw_from_one_bucket(redis_url: str) -> None:
    async with bucket(redis_url, 10, 4) as a, bucket(redis_url, 10, 4) as b:
        got = [await (a if i % 2 else b).reserve() for i in range(9)]
    # one bucket of capacity 3 at 10/s, whichever replica asks: 0 0 0 .1 .2 .3 .4 .5 .6
    assert got == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6], abs=0.05)


@asynccontextmanager
async def replicas(portal: StandInPortal, n: int, **env: str) -> AsyncIterator[list[B24Client]]:
    """`n` clients as `n` processes would make them (own HTTP client, own Redis pool), sharing Redis."""
    settings = config.load(env)
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(n):
            http = await stack.enter_async_context(make_http(settings.timeout))
            shared = shared_portal(settings)
            assert isinstance(shared, SharedPortal)
            stack.push_async_callback(shared.redis.aclose)
            auth = make_auth(settings, http)
            client = B24Client(settings, http, auth, shared)
            store = getattr(getattr(auth, "session", None), "store", None)
            auth_redis = getattr(store, "_redis", None)
            if auth_redis is not None:
                stack.push_async_callback(auth_redis.aclose)
            clients.append(client)
        yield clients


def session_of(client: B24Client) -> OAuthSession:
    """The OAuth session behind a replica's client: its pair store is the one in Redis."""
    assert isinstance(client.auth, OAuth) and isinstance(client.auth.session, OAuthSession)
    return client.auth.session


async def test_redis_down_fails_each_call_by_name_and_never_falls_back(http_portal: StandInPortal) -> None:
    env = webhook_vars(http_portal.webhook_url, B24_REDIS_URL=f"redis://:pw0secret@127.0.0.1:{free_port()}/0")
    async with replicas(http_portal, 1, **env) as (client,):
        for _ in range(2):  # each call says so; none is sent on a per-process budget
            with pytest.raises(UpstreamError) as caught:
                await read_chat(client, "chat5")
            message = str(caught.value)
            assert "B24_REDIS_URL" in message and "127.0.0.1" in message and "pw0secret" not in message
    assert http_portal.count() == 0


async def test_one_replicas_block_holds_for_all(http_portal: StandInPortal, redis_url: str) -> None:
    env = webhook_vars(http_portal.webhook_url, B24_REDIS_URL=redis_url)
    async with replicas(http_portal, 2, **env) as (a, b):
        http_portal.script(Fault.time_limit(reset_in_seconds=120))
        with pytest.raises(PortalError, match="OPERATION_TIME_LIMIT"):
            await read_chat(a, "chat5")
        assert http_portal.count() == 1
        with pytest.raises(PortalError) as caught:  # b knows without asking the portal
            await read_chat(b, "chat5")
        assert caught.value.code == "OPERATION_TIME_LIMIT" and "another b24-mcp replica" in str(caught.value)
        assert http_portal.count() == 1
        assert await b.scopes()  # another method is not blocked

        http_portal.script(Fault.error(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload."))
        with pytest.raises(PortalError, match="OVERLOAD_LIMIT"):
            await a.scopes()
        sent = len(http_portal.requests)
        with pytest.raises(PortalError, match="OVERLOAD_LIMIT"):
            await b.get_bot()
        assert len(http_portal.requests) == sent  # the whole portal is blocked: nothing more is sent


async def test_a_short_block_is_waited_out(http_portal: StandInPortal, redis_url: str) -> None:
    env = webhook_vars(http_portal.webhook_url, B24_REDIS_URL=redis_url)
    told: list[str] = []

    async def on_wait(seconds: float, why: str) -> None:
        told.append(why)

    async with replicas(http_portal, 2, **env) as (a, b):
        http_portal.script(Fault.time_limit(reset_in_seconds=0.1))
        assert (await read_chat(a, "chat5")).name == "Support Chat"  # a waits for the reset itself, as today
        # long enough that b's call starts while a's block is still in Redis, even on a loaded machine
        http_portal.script(Fault.time_limit(reset_in_seconds=0.2))
        direct = redis.Redis.from_url(redis_url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_chat, a, "chat5")
            with anyio.fail_after(5):
                while not direct.keys("*:block:imbot.v2.Chat.get"):  # noqa: ASYNC110 - a's refusal, told to Redis
                    await anyio.sleep(0.005)
            assert (await read_chat(b, "chat5", on_wait=on_wait)).name == "Support Chat"
    assert [why for why in told if "time budget on the portal to reset" in why]  # b waited, without asking
    assert http_portal.count() == 5  # a: 2 refused + 2 answered; b: 1 answered, never refused


def oauth_env(portal: StandInPortal, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "B24_PORTAL_URL": portal.base_url,
        "B24_OAUTH_SERVER": portal.base_url,
        "B24_ACCESS_TOKEN": APP.access_token,
        "B24_REFRESH_TOKEN": APP.refresh_token,
        "B24_CLIENT_ID": APP.client_id,
        "B24_CLIENT_SECRET": APP.client_secret,
        "B24_BOT_ID": "456",
        "B24_REDIS_URL": redis_url,
        "B24_RATE_LIMIT": "100",
        "B24_RATE_BURST": "100",
        "B24_TIMEOUT": "2",
        **extra,
    }


async def calls(clients: list[B24Client], each: int) -> list[Any]:
    results: list[Any] = []

    async def one(c: B24Client) -> None:
        results.append(await read_chat(c, "chat5"))

    async with anyio.create_task_group() as tg:
        for c in clients:
            for _ in range(each):
                tg.start_soon(one, c)
    return results


async def test_expiry_across_replicas_costs_one_refresh(redis_url: str) -> None:
    with StandInPortal(oauth=OAuthSettings(), refresh_delay=0.1) as portal:
        async with replicas(portal, 3, **oauth_env(portal, redis_url)) as clients:
            assert len(await calls(clients, 1)) == 3
            portal.expire_access_token()
            assert len(await calls(clients, 3)) == 9
        assert (portal.refresh_count, portal.invalid_grants) == (1, 0)
        stored = redis.Redis.from_url(redis_url, decode_responses=True).hgetall(
            f"b24-mcp:{portal.standin.portal_url.split('//')[1]}:oauth:{fingerprint(APP.client_id)}"
        )
        assert stored["access_token"] in portal.current_access_tokens

        # A new replica started with the (now dead) seed in its environment continues from the stored pair.
        async with replicas(portal, 1, **oauth_env(portal, redis_url)) as (late,):
            assert (await read_chat(late, "chat5")).name == "Support Chat"
        assert portal.refresh_count == 1


async def test_a_dead_replicas_lock_expires_and_the_next_call_refreshes(redis_url: str) -> None:
    with StandInPortal(oauth=OAuthSettings()) as portal:
        async with replicas(portal, 1, **oauth_env(portal, redis_url)) as (client,):
            await read_chat(client, "chat5")
            session = session_of(client)
            assert isinstance(session.store, RedisPairs)
            # A replica took the lock and died mid-refresh: its lock stays until its TTL.
            redis.Redis.from_url(redis_url).set(session.store.lock_key, "dead-replica", px=200)
            portal.expire_access_token()
            assert (await read_chat(client, "chat5")).name == "Support Chat"
        assert (portal.refresh_count, portal.invalid_grants) == (1, 0)


async def test_the_pair_is_written_only_over_the_one_it_replaces(redis_url: str) -> None:
    """Compare-and-set: a replica whose lock ran out cannot overwrite the pair another replica stored since."""
    with StandInPortal(oauth=OAuthSettings()) as portal:
        async with replicas(portal, 1, **oauth_env(portal, redis_url)) as (client,):
            await read_chat(client, "chat5")
            store = session_of(client).store
            assert isinstance(store, RedisPairs)
            direct = redis.Redis.from_url(redis_url, decode_responses=True)
            direct.hset(store.key, mapping={"refresh_token": "newerREFRESH", "access_token": "newerACCESS"})
            seed = fingerprint(APP.refresh_token)
            late = Stored(seed, TokenPair("lateACCESS", "lateREFRESH"))
            assert await store.write(late, APP.refresh_token, locked=True) is False
            assert direct.hget(store.key, "refresh_token") == "newerREFRESH"  # kept, not forked

            following = Stored(seed, TokenPair("nextACCESS", "nextREFRESH"))
            assert await store.write(following, "newerREFRESH", locked=True) is True
            assert direct.hget(store.key, "refresh_token") == "nextREFRESH"  # replaces exactly the one it read


def stored_pair(redis_url: str, portal: StandInPortal) -> dict[str, str]:
    key = f"b24-mcp:{portal.standin.portal_url.split('//')[1]}:oauth:{fingerprint(APP.client_id)}"
    stored: dict[str, str] = redis.Redis.from_url(redis_url, decode_responses=True).hgetall(key)  # type: ignore[assignment]
    return stored


async def test_a_call_cancelled_mid_renewal_still_stores_the_rotated_pair(redis_url: str) -> None:
    with StandInPortal(oauth=OAuthSettings()) as portal:
        async with replicas(portal, 1, **oauth_env(portal, redis_url)) as (client,):
            await read_chat(client, "chat5")
            portal.after_rotation, portal.rotated_delay = "late", 0.5
            portal.expire_access_token()
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_chat, client, "chat5")
                await rotated(portal)
                tg.cancel_scope.cancel()  # the caller is gone; Bitrix24 has rotated the pair
            with anyio.fail_after(10):
                while stored_pair(redis_url, portal).get("refresh_token") not in portal.standin.refresh_tokens:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            portal.after_rotation = None
            assert (await read_chat(client, "chat5")).name == "Support Chat"
        assert (portal.refresh_count, portal.invalid_grants) == (1, 0)


async def test_a_redis_that_lost_its_data_does_not_make_a_replica_drop_its_live_pair(redis_url: str) -> None:
    """Redis restarted empty; a new replica seeds it with the environment's pair, long dead. A replica holding a
    newer pair of the same seed never takes that older one: it renews its own at the next expiry."""
    with StandInPortal(oauth=OAuthSettings()) as portal:
        env = oauth_env(portal, redis_url)
        async with replicas(portal, 2, **env) as (renewer, holder):
            portal.expire_access_token()
            await read_chat(renewer, "chat5")  # renewed
            await read_chat(holder, "chat5")  # took the renewed pair: newer than the environment's, never spent here
            redis.Redis.from_url(redis_url).flushdb()  # Redis lost its data
            async with replicas(portal, 1, **env) as (newcomer,):
                await newcomer.auth.sign({})  # seeds Redis with the dead pair
            portal.expire_access_token()
            assert (await read_chat(holder, "chat5")).name == "Support Chat"
        assert (portal.refresh_count, portal.invalid_grants) == (2, 0)
        assert stored_pair(redis_url, portal)["access_token"] in portal.current_access_tokens


async def test_a_renewal_slower_than_the_lock_ttl_keeps_its_lock(redis_url: str) -> None:
    """The lock's TTL is short (a dead replica's lock is soon gone) and extended while its renewal runs: a slow
    token server does not let a second replica take the lock and spend the token the first is renewing."""
    with StandInPortal(oauth=OAuthSettings()) as portal:
        async with replicas(portal, 2, **oauth_env(portal, redis_url, B24_TIMEOUT="1")) as (a, b):
            await calls([a, b], 1)
            store = session_of(a).store
            assert isinstance(store, RedisPairs)
            assert store.lock_ttl == 2.0
            portal.after_rotation, portal.rotated_delay = "late", 2.5  # longer than the TTL, within the call
            portal.expire_access_token()
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_chat, a, "chat5")
                await rotated(portal)
                assert (await read_chat(b, "chat5")).name == "Support Chat"
        assert (portal.refresh_count, portal.invalid_grants) == (1, 0)


@pytest.mark.parametrize(
    ("suffix", "value"), [("overload", "garbage"), ("overload", "inf"), ("pace", "inf"), ("pace", "garbage")]
)
async def test_unreadable_shared_state_is_taken_as_absent_and_said(
    http_portal: StandInPortal, redis_url: str, suffix: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A value no replica writes (another program's, a typo at redis-cli) neither breaks each call nor blocks the
    portal until a TTL nobody set: it is ignored, replaced where it is ours, and named in the log once."""
    env = webhook_vars(http_portal.webhook_url, B24_REDIS_URL=redis_url)
    async with replicas(http_portal, 1, **env) as (client,):
        key = f"b24-mcp:{client.host}:{suffix}"
        redis.Redis.from_url(redis_url).set(key, value)  # no TTL
        assert (await read_chat(client, "chat5")).name == "Support Chat"
        assert (await read_chat(client, "chat5")).name == "Support Chat"
    assert f"Redis key {key} holds a value b24-mcp cannot read" in caplog.text
    redis.Redis.from_url(redis_url).delete(key)


async def test_a_slow_redis_is_slow_not_unreachable(http_portal: StandInPortal, redis_server: RedisServer) -> None:
    """Each Redis reply held 0.5 s: a new connection's first script call (its NOSCRIPT round trip included) fits."""
    proxy = SlowProxy(redis_server.port, 0.5)
    try:
        env = webhook_vars(http_portal.webhook_url, B24_REDIS_URL=proxy.url)
        async with replicas(http_portal, 1, **env) as (client,):
            assert (await read_chat(client, "chat5")).name == "Support Chat"
    finally:
        proxy.close()
