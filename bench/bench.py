"""b24-mcp's performance against its floors, measured side by side in one run; prints JSON.

    uv run python bench/bench.py [--quick] [--server-root TREE]

Every figure is compared with a floor measured in the same run on the same machine, and each goal is a
ratio, so a busy or slow machine moves both sides alike. Servers are driven over raw stdio pipes with
hand-written JSON-RPC (no client library in the measured path), against the stand-in portal from the test
suite served over HTTPS on 127.0.0.1. Nothing here runs in the test suite: timings do not belong there.

Floors:
- start-up: a one-tool MCPServer on the same SDK (bench/floor_server.py), spawn -> initialize -> tools/list;
  the goal is on wall time, and the CPU time the process had by then is reported beside it (a machine busy
  with other work stretches wall time, much less CPU time).
- first call: after tools/list and a 0.3 s pause (a host lists tools at start and calls later), the first
  tools/call vs the p50 of the calls that follow it in the same process; the floor's first echo likewise.
- per call: a direct keep-alive async httpx POST to the same portal, as many as the tool makes (the network
  floor, made the way an asyncio server must; a sync httpx figure is reported beside get_chat's), and the
  SDK's own echo tool round trip over stdio (the transport floor: an async tool, like b24-mcp's, driven by
  the same client the same way). A tool's overhead = its p50 - the direct p50; the goal for get_chat is
  overhead <= 1.5 x the echo round trip. get_messages(dialogId) makes two requests (Chat.get, getContext).
- concurrency: 20 concurrent get_chat calls against a portal that takes 200 ms, vs one call.
- pacing: a burst larger than the portal's bucket, vs the ideal time the bucket allows; zero refusals.
- memory: idle RSS (after tools/list, so after the background warm-up) vs the floor's; RSS growth over
  1000 calls.

Both servers run on an environment of the measured tree's lock without its dev dependencies (made by
`uv sync --no-dev` in the temporary directory), as a user's install is: a dev tool in .venv changes what they load.

--server-root measures another checkout of b24-mcp (e.g. `git worktree add /tmp/b24-before fa31fe0`): its server
is spawned from that tree, with its own runtime environment, cwd and PYTHONPATH; the floor server (this tree's)
runs on the same python, so each ratio compares like with like. Tools that tree does not have are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import trustme  # noqa: E402

from tests.portal import StandInPortal  # noqa: E402
from tests.values import initialize  # noqa: E402

CODE = "benchSECRETcode"
TOKEN = "benchSECRETtoken"
PAUSE = 0.3  # seconds between tools/list and the first call: a host lists tools at start and calls later
FAST = {"B24_RATE_LIMIT": "1000", "B24_RATE_BURST": "1000"}  # the client's own pacing out of the way
INIT = initialize("bench", 0)
Command = tuple[list[str], dict[str, str], Path]


class Stdio:
    """A server process spoken to with raw newline-delimited JSON-RPC."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
        )
        self._id = 0
        self._lock = threading.Lock()
        self._waiters: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            waiter = self._waiters.get(message.get("id", -1))
            if waiter is not None:
                waiter[1].append(message)
                waiter[0].set()

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> dict[str, Any]:
        with self._lock:
            self._id += 1
            ident = self._id
        event: threading.Event = threading.Event()
        box: list[dict[str, Any]] = []
        self._waiters[ident] = (event, box)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        if not event.wait(timeout):
            raise TimeoutError(f"{method} got no answer in {timeout} s")
        del self._waiters[ident]
        return box[0]

    def initialize(self) -> None:
        self._waiters[0] = (threading.Event(), [])
        self.send(INIT)
        if not self._waiters[0][0].wait(60):
            raise TimeoutError("initialize got no answer")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def tools(self) -> list[str]:
        """tools/list, as a host does after initialize: the names."""
        return [tool["name"] for tool in self.request("tools/list")["result"]["tools"]]

    def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": tool, "arguments": arguments})
        if "error" in answer or answer["result"].get("isError"):
            raise RuntimeError(f"{tool} failed: {answer}")
        return answer

    def timed(self, tool: str, arguments: dict[str, Any]) -> float:
        t = time.perf_counter()
        self.call(tool, arguments)
        return time.perf_counter() - t

    def cpu_s(self) -> float:
        """CPU time its live threads have had so far, from the scheduler (ns): less moved by a busy machine."""
        total = 0
        for path in Path(f"/proc/{self.proc.pid}/task").glob("*/schedstat"):
            try:
                total += int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):  # a thread that has just ended
                continue
        return total / 1e9

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass(frozen=True)
class Target:
    """The b24-mcp checkout under test and the python both servers run on."""

    root: Path
    python: str


TARGET = Target(ROOT, sys.executable)


def env(**extra: str) -> dict[str, str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return {**base, **extra}


def b24(portal: StandInPortal | None, **extra: str) -> Command:
    root = str(TARGET.root)
    if portal is None:
        return [TARGET.python, "-m", "b24_mcp", "--demo"], env(PYTHONPATH=root, **extra), TARGET.root
    return (
        [TARGET.python, "-m", "b24_mcp"],
        env(
            PYTHONPATH=root,
            B24_WEBHOOK_URL=portal.webhook_url,
            B24_BOT_ID="456",
            B24_BOT_TOKEN=TOKEN,
            SSL_CERT_FILE=str(portal.ca_pem_path),
            **extra,
        ),
        TARGET.root,
    )


def floor() -> Command:
    return [TARGET.python, str(ROOT / "bench" / "floor_server.py")], env(), ROOT


def burst(server: Stdio, n: int) -> float:
    """n get_chat calls at once on one session; seconds until the last answer."""
    threads = [threading.Thread(target=server.call, args=("get_chat", {"dialogId": "chat5"})) for _ in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    return time.perf_counter() - t


def ratio(ours: float, floor: float) -> float:
    """Every goal is compared with this figure: 4 places, so that 1.0503 never reads (and passes) as 1.05."""
    return round(ours / floor, 4)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(v: float, places: int = 3) -> float:
    return round(v * 1000, places)


def startup_and_first_call(portal: StandInPortal, runs: int, following: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """spawn -> initialize answered -> tools/list answered (start-up); then, after PAUSE, the first tools/call
    and `following` more (first call vs steady). Interleaved b24-mcp / floor, so drift hits both alike."""
    up: dict[str, list[float]] = {"ours": [], "sdk": []}
    cpu: dict[str, list[float]] = {"ours": [], "sdk": []}
    first: dict[str, list[float]] = {"ours": [], "sdk": []}
    steady: dict[str, list[float]] = {"ours": [], "sdk": []}
    for _ in range(runs):
        for command, key, tool, arguments in (
            (b24(portal, **FAST), "ours", "get_chat", {"dialogId": "chat5"}),
            (floor(), "sdk", "echo", {"text": "chat5"}),
        ):
            server = Stdio(*command)
            server.initialize()
            server.tools()
            up[key].append(time.perf_counter() - server.started)
            cpu[key].append(server.cpu_s())
            time.sleep(PAUSE)
            first[key].append(server.timed(tool, arguments))
            steady[key].extend(server.timed(tool, arguments) for _ in range(following))
            server.close()
    a, b = statistics.median(up["ours"]), statistics.median(up["sdk"])
    ca, cb = statistics.median(cpu["ours"]), statistics.median(cpu["sdk"])
    start = {
        "runs": runs,
        "b24_mcp_ms": ms(a, 1),
        "sdk_floor_ms": ms(b, 1),
        "ratio": ratio(a, b),
        "b24_mcp_cpu_ms": ms(ca, 1),
        "sdk_floor_cpu_ms": ms(cb, 1),
        "cpu_ratio": ratio(ca, cb),
    }
    f, s = statistics.median(first["ours"]), statistics.median(steady["ours"])
    ef, es = statistics.median(first["sdk"]), statistics.median(steady["sdk"])
    return start, {
        "runs": runs,
        "note": f"spawn -> initialize -> tools/list, a {PAUSE} s pause (as a host has), then the first call; "
        f"steady = p50 of the {following} calls after it, pooled over runs",
        "pause_after_tools_list_s": PAUSE,
        "get_chat_first_p50_ms": ms(f),
        "get_chat_first_max_ms": ms(max(first["ours"])),
        "get_chat_steady_p50_ms": ms(s),
        "get_chat_first_vs_steady_ratio": ratio(f, s),
        "sdk_echo_first_p50_ms": ms(ef),
        "sdk_echo_first_max_ms": ms(max(first["sdk"])),
        "sdk_echo_steady_p50_ms": ms(es),
        "sdk_echo_first_vs_steady_ratio": ratio(ef, es),
    }


def per_call(portal: StandInPortal, calls: int) -> dict[str, Any]:
    """Sequential calls, interleaved: each tool, then the same portal requests made directly, then the SDK's echo."""
    server = Stdio(*b24(portal, **FAST))
    server.initialize()
    names = server.tools()
    echo = Stdio(*floor())
    echo.initialize()
    echo.tools()
    bot = {"botId": 456, "botToken": TOKEN}
    chat_get = (portal.webhook_url + "imbot.v2.Chat.get", {**bot, "dialogId": "chat5"})
    context = (portal.webhook_url + "imbot.v2.Chat.Message.getContext", {**bot, "messageId": 789, "range": 20})
    message_get = (portal.webhook_url + "imbot.v2.Chat.Message.get", {**bot, "messageId": 789})
    # Each tool with the portal requests it makes, in order; tools the server under test lacks are left out.
    Requests = list[tuple[str, dict[str, Any]]]
    cases: list[tuple[str, dict[str, Any], Requests]] = [
        ("get_chat", {"dialogId": "chat5"}, [chat_get]),
        ("get_messages", {"dialogId": "chat5", "range": 20}, [chat_get, context]),
        ("get_message", {"messageId": 789}, [message_get]),
    ]
    cases = [case for case in cases if case[0] in names]
    ours: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    direct: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    direct_sync: list[float] = []
    sdk: list[float] = []
    loop = asyncio.new_event_loop()
    async_http = httpx.AsyncClient(verify=str(portal.ca_pem_path))

    async def post(requests: Requests) -> None:
        for url, body in requests:
            (await async_http.post(url, json=body)).raise_for_status()

    def direct_async(requests: Requests) -> float:
        t = time.perf_counter()
        loop.run_until_complete(post(requests))
        return time.perf_counter() - t

    def direct_sync_chat_get() -> float:
        t = time.perf_counter()
        sync_http.post(chat_get[0], json=chat_get[1]).raise_for_status()
        return time.perf_counter() - t

    with httpx.Client(verify=str(portal.ca_pem_path)) as sync_http:
        for i in range(calls + 20):  # the first 20 of each warm up connections and caches
            row: list[tuple[list[float], float]] = []
            for name, arguments, requests in cases:
                row.append((ours[name], server.timed(name, arguments)))
                row.append((direct[name], direct_async(requests)))
            row.append((direct_sync, direct_sync_chat_get()))
            row.append((sdk, echo.timed("echo", {"text": "chat5"})))
            if i >= 20:
                for sink, value in row:
                    sink.append(value)
    loop.run_until_complete(async_http.aclose())
    loop.close()
    server.close()
    echo.close()
    # The network floor is the same requests made the way an asyncio MCP server must make them: async httpx,
    # keep-alive. The sync figure is reported beside get_chat's: the gap is httpx's async stack, not b24-mcp.
    echo_p50 = statistics.median(sdk)
    results: dict[str, Any] = {
        "calls": calls,
        "sdk_echo_p50_ms": ms(echo_p50),
        "sdk_echo_p99_ms": ms(pct(sdk, 0.99)),
        "direct_sync_httpx_chat_get_p50_ms": ms(statistics.median(direct_sync)),
        "direct_sync_httpx_chat_get_p99_ms": ms(pct(direct_sync, 0.99)),
    }
    for name, arguments, requests in cases:
        overhead = statistics.median(ours[name]) - statistics.median(direct[name])
        results[name] = {
            "arguments": arguments,
            "portal_requests": len(requests),
            "p50_ms": ms(statistics.median(ours[name])),
            "p99_ms": ms(pct(ours[name], 0.99)),
            "direct_async_httpx_p50_ms": ms(statistics.median(direct[name])),
            "direct_async_httpx_p99_ms": ms(pct(direct[name], 0.99)),
            "overhead_over_direct_ms": ms(overhead),
            "overhead_vs_echo_ratio": ratio(overhead, echo_p50),
        }
    return results


def concurrent(ca: trustme.CA, n: int = 20, delay: float = 0.2) -> dict[str, Any]:
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN, delay=delay) as portal:
        server = Stdio(*b24(portal, **FAST))
        server.initialize()
        server.call("get_chat", {"dialogId": "chat5"})  # warm the connection pool
        t = time.perf_counter()
        server.call("get_chat", {"dialogId": "chat5"})
        one = time.perf_counter() - t
        many = burst(server, n)
        server.close()
        return {
            "calls": n,
            "portal_delay_ms": delay * 1000,
            "one_ms": round(one * 1000, 1),
            "concurrent_ms": round(many * 1000, 1),
            "ratio": ratio(many, one),
            "portal_max_in_flight": portal.max_in_flight,
        }


def pacing(ca: trustme.CA, n: int = 40, rate: float = 5, bucket: int = 10) -> dict[str, Any]:
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN, rate=rate, burst=bucket) as portal:
        server = Stdio(*b24(portal, B24_RATE_LIMIT=str(rate), B24_RATE_BURST=str(bucket)))
        server.initialize()
        took = burst(server, n)
        server.close()
        # The portal itself would accept `bucket` at once and then `rate` per second: that is the ideal.
        ideal = (n - bucket) / rate
        return {
            "calls": n,
            "portal_rate_per_s": rate,
            "portal_bucket": bucket,
            "took_s": round(took, 3),
            "ideal_s": round(ideal, 3),
            "ratio": ratio(took, ideal),
            "portal_refusals": portal.refusals,
            "portal_requests": portal.count(),
        }


def memory(portal: StandInPortal, calls: int) -> dict[str, Any]:
    server = Stdio(*b24(portal, **FAST))
    server.initialize()
    server.tools()
    sdk = Stdio(*floor())
    sdk.initialize()
    sdk.tools()
    time.sleep(0.5)
    idle, idle_floor = server.rss_mb(), sdk.rss_mb()
    for _ in range(50):
        server.call("get_chat", {"dialogId": "chat5"})
    warm = server.rss_mb()
    for _ in range(calls):
        server.call("get_chat", {"dialogId": "chat5"})
    after = server.rss_mb()
    server.close()
    sdk.close()
    return {
        "idle_rss_mb": round(idle, 1),
        "sdk_floor_idle_rss_mb": round(idle_floor, 1),
        "idle_ratio": ratio(idle, idle_floor),
        "rss_after_warmup_mb": round(warm, 1),
        "rss_after_calls_mb": round(after, 1),
        "calls": calls,
        "growth_mb": round(after - warm, 2),
    }


def installed(root: Path) -> str:
    """The python of an environment with `root`'s locked runtime dependencies only, as a user's install has them:
    a dev tool in the project's .venv changes what the servers import (pytest brings pygments, which httpx then
    loads: ~1 MB and a few ms on b24-mcp's side only). Made once per tree, in the temporary directory."""
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("bench.py needs uv (https://docs.astral.sh/uv/) to make the runtime-only environment")
    venv = Path(tempfile.gettempdir()) / f"b24-mcp-bench-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    subprocess.run(
        [uv, "sync", "--quiet", "--frozen", "--no-dev", "--project", str(root)],
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        check=True,
    )
    return str(venv / "bin" / "python")


def commit_of(root: Path) -> str:
    git = shutil.which("git")
    if git is None:
        return ""
    found = subprocess.run([git, "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip()


def main() -> None:
    global TARGET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    parser.add_argument(
        "--server-root",
        type=Path,
        default=ROOT,
        help="the b24-mcp checkout to measure (default: this one), run from an environment of its runtime lock",
    )
    args = parser.parse_args()
    root = args.server_root.resolve()
    TARGET = Target(root, installed(root))
    runs, following, calls = (5, 10, 100) if args.quick else (41, 20, 500)
    ca = trustme.CA()
    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN) as portal:
        start, first = startup_and_first_call(portal, runs, following)
        results: dict[str, Any] = {
            "python": sys.version.split()[0],
            "server_root": str(root),
            "server_commit": commit_of(root),
            "startup": start,
            "first_call": first,
            "per_call": per_call(portal, calls),
        }
        results["memory"] = memory(portal, 1000)
    results["concurrency"] = concurrent(ca)
    results["pacing"] = pacing(ca)
    goals = {
        "startup_ratio_le_1.05": results["startup"]["ratio"] <= 1.05,
        "first_call_le_1.5x_steady": results["first_call"]["get_chat_first_vs_steady_ratio"] <= 1.5,
        "overhead_vs_echo_le_1.5": results["per_call"]["get_chat"]["overhead_vs_echo_ratio"] <= 1.5,
        "concurrency_ratio_le_1.5": results["concurrency"]["ratio"] <= 1.5,
        "pacing_within_10pct_and_no_refusals": abs(results["pacing"]["ratio"] - 1) <= 0.10
        and results["pacing"]["portal_refusals"] == 0,
        "idle_rss_ratio_le_1.1": results["memory"]["idle_ratio"] <= 1.1,
        "growth_le_5mb_over_1000_calls": results["memory"]["growth_mb"] <= 5,
    }
    results["goals"] = goals
    results["all_goals_met"] = all(goals.values())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
