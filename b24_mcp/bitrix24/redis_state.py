"""What replicas of b24-mcp share through Redis (`B24_REDIS_URL`): one portal's bucket, its blocks, its OAuth pair.

N replicas pacing alone would spend N times the portal's budget, so these live in Redis, and Redis unreachable is
an error for that call naming B24_REDIS_URL, never a fall-back to per-process state. The pair is the one copy of a
rotating secret, kept in plaintext: docs/team.md says how to run Redis for it. Redis is imported only when configured.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..errors import B24Error, PortalError, UpstreamError, available_later, portal_error
from ..logs import fingerprint
from ..team import REDIS_URL, RedisConfig
from .oauth import LockBusy, SaveFailed, Stored
from .pacing import OnWait, SharedBucket, gcra, tolerance
from .token_server import TokenPair

if TYPE_CHECKING:
    import redis.asyncio

    from ..settings import Settings

log = logging.getLogger("b24_mcp.redis")

T = TypeVar("T")
REDIS_TIMEOUT = 2.0  # seconds one Redis reply (or connecting) may take
REDIS_OP = 2 * REDIS_TIMEOUT  # seconds one operation may take: a script's first run is three round trips
OVERLOAD_HOLD = 60.0  # seconds replicas stop calling a portal that answered OVERLOAD_LIMIT
LOCK_POLL = 0.05  # seconds between two tries of the refresh lock
LOCK_MARGIN = 0.5  # a refresh lock's TTL is B24_TIMEOUT plus twice this, extended while it is held

# GCRA, as pacing.LeakyBucket: KEYS[1] holds the theoretical arrival time (TAT) on Redis's clock.
# ARGV: op, interval, tolerance, max_wait (-1: no limit). Returns the wait as a string ("-1": too far, nothing
# taken), "!"-prefixed when the stored TAT was unreadable and replaced; numbers leave Lua as strings, since Redis
# would truncate a Lua number to an integer.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, tolerance = tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
local tat = tonumber(raw or '0')
local unreadable = ''
if tat == nil or tat ~= tat or tat < 0 or tat > now + 10 * (tolerance + interval) + 60 then
  if raw then unreadable = '!' end  -- no replica sets that: shared state not to be trusted, taken as absent
  tat = 0
end
local result = 0
if ARGV[1] == 'reserve' then
  tat = math.max(tat, now)
  local send_at = math.max(now, tat - tolerance)
  local max_wait = tonumber(ARGV[4])
  if send_at > now and max_wait >= 0 and send_at - now > max_wait then
    return unreadable .. '-1'
  end
  tat = tat + interval
  result = send_at - now
elseif ARGV[1] == 'release' then
  tat = math.max(now, tat - interval)
else
  tat = math.max(tat, now + tolerance + interval)
end
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return unreadable .. string.format('%.6f', result)
"""

# The pair's first writer seeds it from the environment; everyone reads what is there.
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return redis.call('HGETALL', KEYS[1])
"""

# Compare-and-set on the refresh token the new pair replaces (ARGV[1]; '' = no pair stored).
_CAS = """
local old = redis.call('HGET', KEYS[1], 'refresh_token')
if (old or '') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Redis:
    """One connection pool to B24_REDIS_URL; every command bounded in time, every failure a per-call error."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._client: redis.asyncio.Redis | None = None

    @property
    def client(self) -> redis.asyncio.Redis:
        if self._client is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = redis.asyncio.Redis.from_url(
                self.config.url,
                decode_responses=True,
                socket_connect_timeout=REDIS_TIMEOUT,
                socket_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),  # the caller's error names Redis at once; the call's own rules retry
                health_check_interval=0,
                driver_info=None,  # no CLIENT SETINFO: two round trips more on each new connection
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self, op: Callable[[redis.asyncio.Redis], Awaitable[T]], deadline: float | None = None) -> T:
        """`op` on Redis within REDIS_OP (and the call's deadline); `unreachable` if it cannot be done."""
        from redis.exceptions import RedisError

        limit = REDIS_OP if deadline is None else min(REDIS_OP, deadline - time.monotonic())
        limit = max(limit, 0.05)
        try:
            with anyio.fail_after(limit):
                return await op(self.client)
        except TimeoutError:
            raise self.unreachable(f"no answer within {limit:.2g} s") from None
        except RedisError as exc:
            raise self.unreachable(type(exc).__name__) from None
        except OSError as exc:
            raise self.unreachable(exc.strerror or type(exc).__name__) from None

    async def ping(self) -> None:
        """One PING: proves the address, the password and the database before the first call needs them."""
        await self.run(lambda client: client.ping())

    def unreachable(self, why: str) -> UpstreamError:
        return UpstreamError(
            f"Redis at {self.config.where} ({REDIS_URL}) cannot be used ({why}). b24-mcp replicas share the "
            "portal's rate limit and OAuth tokens there, and do not fall back to per-process state (that would "
            f"multiply the portal's budget): start Redis or fix {REDIS_URL}, then try again."
        )


class RedisBucket:
    """`pacing.LeakyBucket`'s GCRA, one per portal in Redis, shared by every replica; awaited (`SharedBucket`)."""

    def __init__(self, redis: Redis, key: str, rate: float, burst: int) -> None:
        self._redis = redis
        self._key = key
        self.rate = rate
        self.burst = burst
        self._interval, self.capacity, self._tolerance = gcra(rate, burst)
        self._script = redis.client.register_script(_BUCKET)

    async def _run(self, op: str, max_wait: float = -1.0, spare: int = 0) -> float:
        args = [op, repr(self._interval), repr(tolerance(self._tolerance, self._interval, spare)), repr(max_wait)]
        answer = str(await self._redis.run(lambda _: self._script(keys=[self._key], args=args)))
        if answer.startswith("!"):
            unreadable(self._key)
            answer = answer[1:]
        return float(answer)

    async def reserve(self, max_wait: float = float("inf"), spare: int = 0) -> float | None:
        """As `LeakyBucket.reserve`: the wait for the next slot, or None (nothing taken) when it is too far."""
        wait = await self._run("reserve", -1.0 if max_wait == float("inf") else max(0.0, max_wait), spare)
        return None if wait < 0 else wait

    async def release(self) -> None:
        """Give back a slot taken and not used; runs even in a cancelled caller (shielded, bounded)."""
        with anyio.CancelScope(shield=True):
            try:
                await self._run("release")
            except UpstreamError:
                log.warning("could not give a pacing slot back to Redis at %s", self._redis.config.where)

    async def saturate(self) -> None:
        await self._run("saturate")


class SharedPortal:
    """The portal's shared state for the REST client: the bucket, and blocks other replicas were told about."""

    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        assert settings.team is not None and settings.team.redis is not None
        self.redis = redis or Redis(settings.team.redis)
        self.host = settings.host
        self._prefix = f"b24-mcp:{settings.host}"
        self.bucket: SharedBucket = RedisBucket(
            self.redis, f"{self._prefix}:pace", settings.rate_limit, settings.rate_burst
        )

    def _block_key(self, method: str) -> str:
        return f"{self._prefix}:block:{method}"

    @property
    def _overload_key(self) -> str:
        return f"{self._prefix}:overload"

    async def check(self, method: str, deadline: float, on_wait: OnWait | None) -> None:
        """Before a call: wait out another replica's OPERATION_TIME_LIMIT if it fits the deadline, else raise."""
        keys = [self._block_key(method), self._overload_key]
        stored = await self.redis.run(lambda r: r.mget(keys), deadline)
        blocked_until, overloaded_at = (_number(raw, key) for raw, key in zip(stored, keys, strict=True))
        call: dict[str, object] = {"method": method}
        if overloaded_at is not None:
            ago = max(0.0, time.time() - overloaded_at)
            raise portal_error(
                "OVERLOAD_LIMIT",
                f"another b24-mcp replica was refused {ago:.0f} s ago; none asks again for {OVERLOAD_HOLD:.0f} s",
                status=None,
                host=self.host,
                call=call,
            )
        if blocked_until is None:
            return
        wait = blocked_until - time.time()
        if wait <= 0:
            return
        if wait >= deadline - time.monotonic():
            err = portal_error(
                "OPERATION_TIME_LIMIT",
                "reported by another b24-mcp replica sharing B24_REDIS_URL",
                status=None,
                host=self.host,
                call=call,
            )
            raise available_later(err, method, wait)
        if on_wait is not None:
            await on_wait(wait, f"waiting {wait:.1f} s for {method}'s time budget on the portal to reset")
        await anyio.sleep(wait)

    async def note(self, method: str, err: B24Error, reset_at: float | None) -> None:
        """After a refusal: tell the other replicas about a block that holds for the whole portal."""
        if not isinstance(err, PortalError):
            return
        if err.code == "OPERATION_TIME_LIMIT" and reset_at is not None:
            left_ms = int((reset_at - time.time()) * 1000)
            if left_ms > 0:
                key = self._block_key(method)
                await self.redis.run(lambda r: r.set(key, repr(reset_at), px=left_ms))
        elif err.code == "OVERLOAD_LIMIT":
            await self.redis.run(lambda r: r.set(self._overload_key, repr(time.time()), px=int(OVERLOAD_HOLD * 1000)))


_told: set[str] = set()


def unreadable(key: str) -> None:
    """Shared state no replica would write (another program's, or a corrupt value): taken as absent, said once."""
    if key not in _told:
        _told.add(key)
        log.warning("Redis key %s holds a value b24-mcp cannot read; it is taken as absent (and replaced)", key)


def _number(raw: Any, key: str) -> float | None:
    """A stored time (time.time()), or None: absent, or unreadable (told once)."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        unreadable(key)
        return None
    return value


def _fields(seed: str, pair: TokenPair) -> list[str]:
    return [
        "seed",
        seed,
        "access_token",
        pair.access_token,
        "refresh_token",
        pair.refresh_token,
        "expires_at",
        "" if pair.expires_at is None else repr(pair.expires_at),
        "obtained_at",
        repr(pair.obtained_at),
    ]


def _stored(flat: Any) -> Stored | None:
    """A pair from HGETALL (a dict) or a script's flat [field, value, ...] list; None if absent or not a pair."""
    data = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=False)) if flat else {}
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if not access or not refresh:
        return None
    try:
        expires = float(data["expires_at"]) if data.get("expires_at") else None
        obtained = float(data.get("obtained_at") or 0.0)
    except ValueError:
        expires, obtained = None, 0.0
    return Stored(str(data.get("seed", "")), TokenPair(str(access), str(refresh), expires, obtained))


class RedisPairs:
    """The OAuth pair in a Redis hash, shared by replicas (`oauth.PairStore`): a lock with a TTL (SET NX PX) and a
    compare-and-set write (Lua), so a replica whose lock ran out cannot overwrite a newer pair or fork the chain."""

    def __init__(self, redis: Redis, key: str, lock_ttl: float) -> None:
        self._redis = redis
        self.key = key
        self.lock_key = f"{key}:lock"
        self.lock_ttl = lock_ttl
        self._seed_script = redis.client.register_script(_SEED)
        self._cas_script = redis.client.register_script(_CAS)
        self._unlock_script = redis.client.register_script(_UNLOCK)
        self._extend_script = redis.client.register_script(_EXTEND)

    async def first(self, seed: Stored) -> Stored | None:
        """The stored pair; the environment's seeds it when Redis holds none."""
        args = _fields(seed.seed, seed.pair)
        return _stored(await self._redis.run(lambda _: self._seed_script(keys=[self.key], args=args)))

    async def read(self, deadline: float) -> Stored | None:
        return _stored(await self._redis.run(lambda r: r.hgetall(self.key), deadline))

    async def write(self, new: Stored, replaces: str, *, locked: bool) -> bool | None:
        args = [replaces, *_fields(new.seed, new.pair)]
        try:
            return bool(await self._redis.run(lambda _: self._cas_script(keys=[self.key], args=args)))
        except UpstreamError as err:
            raise SaveFailed(str(err)) from None

    @asynccontextmanager
    async def lock(self, deadline: float) -> AsyncIterator[float]:
        """Hold the refresh lock, its TTL renewed while held: a replica that dies holding it (nothing can save the
        pair that dies with it) keeps the others waiting for one short TTL, not for a whole renewal's limit."""
        token = secrets.token_hex(16)
        ttl_ms = int(self.lock_ttl * 1000)
        while True:
            got = await self._redis.run(lambda r: r.set(self.lock_key, token, nx=True, px=ttl_ms), deadline)
            if got:
                break
            if time.monotonic() + LOCK_POLL >= deadline:
                raise LockBusy(
                    "another b24-mcp replica sharing B24_REDIS_URL is renewing it, or stopped while renewing it",
                    f"Try again: a stopped replica's lock expires within {self.lock_ttl:.0f} s.",
                )
            await anyio.sleep(LOCK_POLL)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep, token, ttl_ms)
                try:
                    yield float("inf")
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._redis.run(lambda _: self._unlock_script(keys=[self.lock_key], args=[token]))
                except UpstreamError:
                    log.warning("could not release the refresh lock in Redis; it expires by itself")

    async def _keep(self, token: str, ttl_ms: int) -> None:
        """Extend the lock's TTL while it is held (the compare-and-set still guards the pair if this fails)."""
        while True:
            await anyio.sleep(self.lock_ttl / 3)
            try:
                await self._redis.run(lambda _: self._extend_script(keys=[self.lock_key], args=[token, ttl_ms]))
            except UpstreamError:
                log.warning("could not extend the refresh lock in Redis; it may expire before the renewal ends")


def pair_store(settings: Settings) -> RedisPairs:
    """The configured application's pair in Redis."""
    from ..settings import OAuthConfig

    auth = settings.auth
    assert isinstance(auth, OAuthConfig) and settings.team is not None and settings.team.redis is not None
    return RedisPairs(
        Redis(settings.team.redis),
        f"b24-mcp:{auth.host}:oauth:{fingerprint(auth.client_id)}",
        lock_ttl=settings.timeout + 2 * LOCK_MARGIN,
    )
