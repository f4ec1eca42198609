"""The team deployment measured: replicas on Streamable HTTP sharing one Redis; prints JSON.

    uv run python bench/team.py [--quick]

Real parts on this machine: a `redis-server` on a free 127.0.0.1 port (no persistence), b24-mcp replicas as
`--transport streamable-http` processes with a bearer token from B24_HTTP_TOKENS_FILE, and the test suite's
stand-in portal on 127.0.0.1 with its leaky bucket. Calls are raw JSON-RPC `tools/call get_chat` over httpx.

- throughput: the same load (N calls, C at once) through 1 replica and through 3, under a generous portal bucket
  (1000/s) whose every answer takes `PORTAL_DELAY`, all with B24_REDIS_URL; 1 replica without Redis beside them
  (what the shared bucket costs a call). The figures are calls/s, the 3:1 ratio, and the cores each side kept
  busy: on a 2-core machine three replicas share two cores with the portal and the client (this process), so
  the ratio is bounded by CPU, not by Redis; the CPU per call shows what a replica costs.
- latency: one call at a time through one replica, with and without Redis: what the shared bucket and blocks
  (two Redis round trips a call) add to a call.
- pacing: a burst of N calls spread over 3 replicas against a portal bucket of 10/s, 10 at once, the replicas set
  to the same (B24_RATE_LIMIT=10, B24_RATE_BURST=10). Ideal: the first `burst - 1` at once, then one every 1/rate,
  so the span of arrivals at the portal is (N - burst + 1) / rate. Reported: refusals (goal 0), the arrivals'
  span / ideal (goal ~1, >= 1), and the same burst with each replica pacing alone (no Redis), which is what
  B24_REDIS_URL prevents: three times the budget, refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from b24_mcp.team import digest  # noqa: E402
from tests.portal import StandInPortal  # noqa: E402
from tests.redis_server import RedisServer, free_port, start_redis  # noqa: E402
from tests.values import HTTP_HEADERS, PROTOCOL_VERSION  # noqa: E402

CODE = "benchSECRETcode"
TOKEN = "benchSECRETtoken"
BEARER = "benchBEARERtoken0123456789"
PORTAL_DELAY = 0.05
HEADERS = {
    **HTTP_HEADERS,
    "MCP-Protocol-Version": PROTOCOL_VERSION,
    "Authorization": f"Bearer {BEARER}",
}


class Urls(list[str]):
    """The replicas' /mcp URLs, and their process ids."""

    pids: list[int]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used (Linux /proc)."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@contextmanager
def replicas(n: int, portal: StandInPortal, tmp: Path, **env: str) -> Iterator[Urls]:
    """`n` replicas against `portal`; their /mcp URLs. Stopped (SIGTERM) on exit."""
    tmp = Path(tempfile.mkdtemp(dir=tmp))
    base = {
        "PATH": "/usr/bin:/bin",
        "B24_WEBHOOK_URL": portal.webhook_url,
        "B24_BOT_ID": "456",
        "B24_BOT_TOKEN": TOKEN,
        "B24_HTTP_TOKENS_FILE": str(tmp / "tokens"),
        "B24_LOG_LEVEL": "WARNING",
        **env,
    }
    (tmp / "tokens").write_text(digest(BEARER) + "\n")
    started: list[tuple[subprocess.Popen[bytes], int, Path]] = []
    try:
        for i in range(n):
            port, log = free_port(), tmp / f"replica-{i}.log"
            with log.open("wb") as err:
                process = subprocess.Popen(
                    [sys.executable, "-m", "b24_mcp", "--transport", "streamable-http", "--port", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=base,
                    cwd=ROOT,
                )
            started.append((process, port, log))
        deadline = time.monotonic() + 60
        for process, _, log in started:
            while b"serving MCP" not in log.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"a replica did not start: {log.read_text()}")
                time.sleep(0.05)
        urls = Urls(f"http://127.0.0.1:{port}/mcp" for _, port, _ in started)
        urls.pids = [process.pid for process, _, _ in started]
        yield urls
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            process.wait(10)


async def load(urls: list[str], calls: int, concurrency: int) -> tuple[float, float, int]:
    """`calls` get_chat calls, `concurrency` at once, round-robin over `urls`, after one warm-up call on each
    replica and a pause that lets the portal's bucket drain: (start on time.monotonic, seconds, errors)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    errors = 0

    async def one(http: httpx.AsyncClient, url: str, i: int) -> bool:
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": "get_chat", "arguments": {"dialogId": "chat5"}}}  # fmt: skip
        response = await http.post(url, json=body, headers=HEADERS)
        return response.status_code == 200 and not response.json()["result"]["isError"]

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            if not await one(http, urls[i % len(urls)], i):
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, trust_env=False, limits=limits) as http:
        for url in urls:  # imports, connections and the client of each replica made before the clock starts
            await one(http, url, -1)
        await asyncio.sleep(1.5)
        for i in range(calls):
            queue.put_nowait(i)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(worker(http) for _ in range(concurrency))), 600)
        return started, time.monotonic() - started, errors


def throughput(redis: RedisServer, tmp: Path, calls: int, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {"calls": calls, "concurrency": concurrency, "portal_delay_s": PORTAL_DELAY}
    shared = {"B24_REDIS_URL": redis.url, "B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}
    for name, n, env in [
        ("1 replica, Redis", 1, shared),
        ("3 replicas, Redis", 3, shared),
        ("1 replica, no Redis", 1, {"B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}),
    ]:
        with StandInPortal(webhook_code=CODE, bot_token=TOKEN, rate=1000, burst=1000, delay=PORTAL_DELAY) as portal:
            with replicas(n, portal, tmp, **env) as urls:
                cpu = cpu_seconds(urls.pids), time.process_time()
                _, seconds, errors = asyncio.run(load(urls, calls, concurrency))
                replica_cpu, bench_cpu = cpu_seconds(urls.pids) - cpu[0], time.process_time() - cpu[1]
        out[name] = {
            "calls_per_s": round(calls / seconds, 1),
            "errors": errors,
            "refusals": portal.refusals,
            # CPU-seconds per wall-second: where the bound is (this machine has 2 cores for everything)
            "replicas_cores_busy": round(replica_cpu / seconds, 2),
            "portal_and_client_cores_busy": round(bench_cpu / seconds, 2),
            "replica_cpu_ms_per_call": round(1000 * replica_cpu / calls, 2),
        }
    out["ratio_3_to_1"] = round(out["3 replicas, Redis"]["calls_per_s"] / out["1 replica, Redis"]["calls_per_s"], 2)
    return out


def latency(redis: RedisServer, tmp: Path, calls: int) -> dict[str, Any]:
    """One call at a time through one replica, with and without Redis: what the shared state adds to a call."""
    out: dict[str, Any] = {"calls": calls}
    for name, env in [("Redis", {"B24_REDIS_URL": redis.url}), ("no Redis", {})]:
        with StandInPortal(webhook_code=CODE, bot_token=TOKEN) as portal:
            with replicas(1, portal, tmp, B24_RATE_LIMIT="1000", B24_RATE_BURST="1000", **env) as urls:
                out[f"p50_ms, {name}"] = round(1000 * asyncio.run(median_call(urls[0], calls)), 2)
    out["redis_adds_ms"] = round(out["p50_ms, Redis"] - out["p50_ms, no Redis"], 2)
    return out


async def median_call(url: str, calls: int) -> float:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "get_chat", "arguments": {"dialogId": "chat5"}}}  # fmt: skip
    times: list[float] = []
    async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
        for i in range(calls + 3):
            started = time.perf_counter()
            response = await http.post(url, json=body, headers=HEADERS)
            assert response.status_code == 200 and not response.json()["result"]["isError"], response.text
            if i >= 3:  # the first calls warm the replica
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def pacing(redis: RedisServer, tmp: Path, calls: int) -> dict[str, Any]:
    rate, burst = 10, 10
    out: dict[str, Any] = {"calls": calls, "portal_rate": rate, "portal_burst": burst}
    ideal = (calls - (burst - 1)) / rate
    for name, env in [
        ("3 replicas, one Redis bucket", {"B24_REDIS_URL": redis.url}),
        ("3 replicas pacing alone (no Redis)", {}),
    ]:
        with StandInPortal(webhook_code=CODE, bot_token=TOKEN, rate=rate, burst=burst) as portal:
            arrivals: list[float] = []
            admit = portal._admit

            def record(admit: Any = admit, arrivals: list[float] = arrivals) -> bool:
                arrivals.append(time.monotonic())
                return bool(admit())

            portal._admit = record  # type: ignore[method-assign]
            with replicas(3, portal, tmp, B24_RATE_LIMIT=str(rate), B24_RATE_BURST=str(burst), **env) as urls:
                refused_before = portal.refusals
                started, seconds, errors = asyncio.run(load(urls, calls, calls))
            burst_arrivals = [t for t in arrivals if t >= started]
            span = burst_arrivals[-1] - burst_arrivals[0]
        out[name] = {
            "refusals": portal.refusals - refused_before,
            "portal_requests": len(burst_arrivals),
            "errors": errors,
            "seconds": round(seconds, 2),
            "arrival_span_s": round(span, 2),
            "span_vs_ideal": round(span / ideal, 3),
        }
    out["ideal_span_s"] = round(ideal, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="b24-team-bench-") as directory:
        tmp = Path(directory)
        redis = start_redis(tmp)
        try:
            result = {
                "throughput": throughput(redis, tmp, 100 if args.quick else 400, 20),
                "latency": latency(redis, tmp, 30 if args.quick else 200),
                "pacing": pacing(redis, tmp, 30 if args.quick else 60),
            }
        finally:
            redis.process.terminate()
            redis.process.wait(10)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
