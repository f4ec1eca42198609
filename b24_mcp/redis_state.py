"""What replicas of b24-mcp share through Redis (`B24_REDIS_URL`): one portal's budget, its blocks, its OAuth pair.

Each b24-mcp process paces itself at the portal's rate; N replicas pacing alone would spend N times the portal's
budget and be refused. With `B24_REDIS_URL` set, three things live in Redis instead of in each process:

- the pacing bucket (`RedisBucket`): the same GCRA as `pacing.LeakyBucket`, one per portal, run atomically in a
  Lua script on Redis's own clock (replicas' clocks never enter it: each gets back how long to wait);
- portal-wide blocks (`SharedPortal`): `OPERATION_TIME_LIMIT` on a method until the portal's `operating_reset_at`,
  and `OVERLOAD_LIMIT` for `OVERLOAD_HOLD` seconds: once one replica is refused, the others wait or fail at once
  instead of spending requests on a portal that will refuse them;
- the OAuth pair (`RedisOAuthSession`), with the token file's rules (refresh only after a rejection, a pair another
  replica renewed is taken as it is) and a single-flight refresh across replicas: a Redis lock with a TTL
  (`SET NX PX`), the pair re-read once it is held, and the new pair written with a compare-and-set on the refresh
  token it replaces (Lua), so neither a replica that dies mid-refresh (its lock expires; the stored pair is still
  the old, whole one) nor one whose lock ran out can overwrite a newer pair or fork the chain. The request to the
  OAuth server is bounded to end before the lock expires. A pair that cannot be written is kept in memory and
  written at the next use: a spent refresh token is never thrown away.

Redis unreachable is an error for that call, naming B24_REDIS_URL (`unreachable`); there is no fallback to a
per-process state, which would silently multiply the budget. Redis is imported only when configured.
Durability: the pair is the one copy of a rotating secret, so run Redis with AOF persistence (README,
"Run it for a team"); a Redis that loses it forces a re-authorisation, nothing worse.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .errors import B24Error, PortalError, UpstreamError, portal_error
from .logs import redact
from .oauth import PairHolder, TokenPair, fingerprint, late_error, request_pair
from .pacing import SharedBucket, gcra
from .team import REDIS_URL, RedisConfig

if TYPE_CHECKING:
    import httpx
    import redis.asyncio

    from .client import OnWait
    from .settings import Settings

log = logging.getLogger("b24_mcp.redis")

T = TypeVar("T")
REDIS_TIMEOUT = 2.0  # seconds one Redis command may take (connecting included)
OVERLOAD_HOLD = 60.0  # seconds replicas stop calling a portal that answered OVERLOAD_LIMIT
LOCK_POLL = 0.05  # seconds between two tries of the refresh lock
LOCK_MARGIN = 0.5  # the refresh's request ends this long before its lock expires

# GCRA, as pacing.LeakyBucket: KEYS[1] holds the theoretical arrival time (TAT) on Redis's clock.
# ARGV: op, interval, tolerance, max_wait (-1: no limit). Returns the wait as a string ("-1": too far, nothing
# taken); numbers leave Lua as strings, since Redis would truncate a Lua number to an integer.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval, tolerance = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local result = 0
if ARGV[1] == 'reserve' then
  tat = math.max(tat, now)
  local send_at = math.max(now, tat - tolerance)
  local max_wait = tonumber(ARGV[4])
  if send_at > now and max_wait >= 0 and send_at - now > max_wait then
    return '-1'
  end
  tat = tat + interval
  result = send_at - now
elseif ARGV[1] == 'release' then
  tat = math.max(now, tat - interval)
else
  tat = math.max(tat, now + tolerance + interval)
end
redis.call('SET', KEYS[1], string.format('%.6f', tat), 'PX', math.ceil((tat - now) * 1000) + 1000)
return string.format('%.6f', result)
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

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Redis:
    """One connection pool to B24_REDIS_URL; every command bounded in time, every failure a per-call error."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._client: redis.asyncio.Redis | None = None
        redact.add([config.password])

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
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self, op: Callable[[redis.asyncio.Redis], Awaitable[T]], deadline: float | None = None) -> T:
        """`op` on Redis within REDIS_TIMEOUT (and the call's deadline); `unreachable` if it cannot be done."""
        from redis.exceptions import RedisError

        limit = REDIS_TIMEOUT if deadline is None else min(REDIS_TIMEOUT, deadline - time.monotonic())
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

    async def _run(self, op: str, max_wait: float = -1.0) -> float:
        args = [op, repr(self._interval), repr(self._tolerance), repr(max_wait)]
        answer = await self._redis.run(lambda _: self._script(keys=[self._key], args=args))
        return float(answer)

    async def reserve(self, max_wait: float = float("inf")) -> float | None:
        """As `LeakyBucket.reserve`: the wait for the next slot, or None (nothing taken) when it is too far."""
        wait = await self._run("reserve", -1.0 if max_wait == float("inf") else max(0.0, max_wait))
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
        blocked_until, overloaded_at = await self.redis.run(lambda r: r.mget(keys), deadline)
        call: dict[str, object] = {"method": method}
        if overloaded_at is not None:
            ago = max(0.0, time.time() - float(overloaded_at))
            raise portal_error(
                "OVERLOAD_LIMIT",
                f"another b24-mcp replica was refused {ago:.0f} s ago; none asks again for {OVERLOAD_HOLD:.0f} s",
                status=None,
                host=self.host,
                call=call,
            )
        if blocked_until is None:
            return
        wait = float(blocked_until) - time.time()
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
            raise PortalError(
                f"{err.message} {method} is available again in {wait:.0f} s; Bitrix24 limits each method's total "
                "run time.",
                code="OPERATION_TIME_LIMIT",
                description=err.description,
            )
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


@dataclass(frozen=True)
class _Stored:
    seed: str
    pair: TokenPair


def _stored(flat: Any) -> _Stored | None:
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
    return _Stored(str(data.get("seed", "")), TokenPair(str(access), str(refresh), expires, obtained))


@dataclass(frozen=True)
class _Pending:
    expected: str  # the stored refresh token the pair replaces ('' = none was stored)
    seed: str
    pair: TokenPair


class RedisOAuthSession(PairHolder):
    """The OAuth pair of one application on one portal, shared by replicas through Redis (`auth.TokenSession`)."""

    def __init__(
        self,
        *,
        redis: Redis,
        key: str,
        http: httpx.AsyncClient,
        token_url: str,
        client_id: str,
        client_secret: str,
        seed: TokenPair,
        lock_ttl: float,
    ) -> None:
        super().__init__(http=http, token_url=token_url, client_id=client_id, client_secret=client_secret, seed=seed)
        self._redis = redis
        self._key = key
        self._lock_key = f"{key}:lock"
        self._lock_ttl = lock_ttl
        self._pending: _Pending | None = None
        self._warned_store = False
        self._seed_script = redis.client.register_script(_SEED)
        self._cas_script = redis.client.register_script(_CAS)
        self._unlock_script = redis.client.register_script(_UNLOCK)

    async def access_token(self) -> str:
        """The token to send: the stored pair of our seed (seeded from the environment if none is stored)."""
        if self._current is None:
            flat = await self._redis.run(
                lambda _: self._seed_script(keys=[self._key], args=_fields(self._seed_fp, self._seed))
            )
            if self._current is None:
                stored = _stored(flat)
                # The stored pair descends from this seed: it is newer. Another seed means fresh tokens were
                # pasted into this replica's environment (a re-authorisation): they win until rejected.
                if stored is not None and stored.seed == self._seed_fp:
                    self._use(stored.pair, stored.seed)
                else:
                    self._use(self._seed, self._seed_fp)
        if self._pending is not None:  # a renewed pair Redis could not take: store it now, unless a recovery is
            try:  # under way (it stores it itself)
                self._lock.acquire_nowait()
            except anyio.WouldBlock:
                pass
            else:
                try:
                    await self._flush(None)
                finally:
                    self._lock.release()
        assert self._current is not None
        return self._current.access_token

    async def recover(self, rejected_access_token: str, deadline: float) -> str:
        """As `oauth.OAuthSession.recover`, across replicas: a pair another replica stored, or one refresh."""
        try:
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                await self._lock.acquire()
        except TimeoutError:
            raise late_error(self._token_host, "another request of this replica is still renewing it") from None
        try:
            await self._flush(deadline)
            current = self._current or self._seed
            if current.access_token != rejected_access_token:
                return current.access_token
            if (newer := self._take_newer(await self._read(deadline), rejected_access_token)) is not None:
                return newer
            async with self._locked(deadline) as lock_expires:
                stored = await self._read(deadline)  # again: renewed while we waited for the lock?
                if (newer := self._take_newer(stored, rejected_access_token)) is not None:
                    return newer
                return await self._refresh(current, stored, min(deadline, lock_expires - LOCK_MARGIN))
        finally:
            self._lock.release()

    def _take_newer(self, stored: _Stored | None, rejected: str) -> str | None:
        if stored is None or not self._adoptable(stored.pair, stored.seed, rejected):
            return None
        log.info("using the token pair another b24-mcp replica renewed")
        return self._use(stored.pair, stored.seed).access_token

    async def _read(self, deadline: float) -> _Stored | None:
        return _stored(await self._redis.run(lambda r: r.hgetall(self._key), deadline))

    async def _refresh(self, current: TokenPair, stored: _Stored | None, until: float) -> str:
        pair = await request_pair(
            self._http, self._token_url, self._client_id, self._client_secret, current.refresh_token, until
        )
        # No await until the pair is live and pending: a cancellation must not lose it.
        self._spent.add(fingerprint(current.refresh_token))
        self._pending = _Pending(stored.pair.refresh_token if stored is not None else "", self._lineage, pair)
        self._use(pair, self._lineage)
        with anyio.CancelScope(shield=True):
            await self._flush(None)
        log.info("access token renewed")
        return pair.access_token

    async def _flush(self, deadline: float | None) -> None:
        """Store the pending pair with a compare-and-set; on failure it stays pending (and live), said once."""
        pending = self._pending
        if pending is None:
            return
        args = [pending.expected, *_fields(pending.seed, pending.pair)]
        try:
            stored = await self._redis.run(lambda _: self._cas_script(keys=[self._key], args=args), deadline)
        except UpstreamError as err:
            if not self._warned_store:
                self._warned_store = True
                log.warning("%s The renewed OAuth pair is kept in memory and stored at the next call.", err)
            return
        self._pending = None
        self._warned_store = False
        if not stored:
            log.warning(
                "not storing the renewed OAuth pair: another replica stored a pair since this one took the refresh "
                "lock (its lock expired first); this replica goes on with its own pair until it is rejected"
            )

    @asynccontextmanager
    async def _locked(self, deadline: float) -> AsyncIterator[float]:
        """Hold the refresh lock (SET NX PX); yields when it expires (time.monotonic). AuthError past `deadline`."""
        token = secrets.token_hex(16)
        ttl_ms = int(self._lock_ttl * 1000)
        while True:
            taken_at = time.monotonic()
            got = await self._redis.run(lambda r: r.set(self._lock_key, token, nx=True, px=ttl_ms), deadline)
            if got:
                break
            if time.monotonic() + LOCK_POLL >= deadline:
                raise late_error(
                    self._token_host,
                    "another b24-mcp replica sharing B24_REDIS_URL is renewing it, or stopped while renewing it",
                    f"Try again: a stopped replica's lock expires within {self._lock_ttl:.0f} s.",
                )
            await anyio.sleep(LOCK_POLL)
        try:
            yield taken_at + self._lock_ttl
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._redis.run(lambda _: self._unlock_script(keys=[self._lock_key], args=[token]))
                except UpstreamError:
                    log.warning("could not release the refresh lock in Redis; it expires by itself")


def oauth_session(settings: Settings, http: httpx.AsyncClient) -> RedisOAuthSession:
    """The Redis-backed session for the configured application, seeded from the environment."""
    from .settings import OAuthConfig

    auth = settings.auth
    assert isinstance(auth, OAuthConfig) and settings.team is not None and settings.team.redis is not None
    return RedisOAuthSession(
        redis=Redis(settings.team.redis),
        key=f"b24-mcp:{auth.host}:oauth:{fingerprint(auth.client_id)}",
        http=http,
        token_url=auth.token_url,
        client_id=auth.client_id,
        client_secret=auth.client_secret,
        seed=TokenPair(auth.access_token, auth.refresh_token),
        lock_ttl=settings.timeout + 2 * LOCK_MARGIN,
    )
