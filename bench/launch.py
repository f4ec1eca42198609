"""How long a host waits for b24-mcp, and what it finds in its log: each launch command, spawn -> tools/list answered.

    uv run python bench/launch.py [--runs 15] [--project DIR] [--command 'LABEL=COMMAND ...']

A host starts the server, sends `initialize`, then `tools/list`, and can offer the tools once that is answered;
that wait is measured here for each way of launching it, with raw newline-delimited JSON-RPC on the pipes (no
client library in the measured path), in the demo mode (no network). Runs are interleaved, each round in a new
order, so a busy machine slows every command alike; the medians and what each command wrote on stderr are
printed as JSON. Run it by hand: timings do not belong in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "launch", "version": "0"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
]


def commands(project: Path) -> dict[str, list[str]]:
    uv = shutil.which("uv") or "uv"
    script = project / ".venv" / ("Scripts/b24-mcp.exe" if os.name == "nt" else "bin/b24-mcp")
    return {
        "uv run --directory DIR b24-mcp": [uv, "run", "--directory", str(project), "b24-mcp"],
        "uv run --no-dev --quiet --directory DIR b24-mcp": [
            uv, "run", "--no-dev", "--quiet", "--directory", str(project), "b24-mcp",
        ],
        "uv run --no-sync --directory DIR b24-mcp": [uv, "run", "--no-sync", "--directory", str(project), "b24-mcp"],
        "DIR/.venv/bin/b24-mcp": [str(script)],
    }  # fmt: skip


def launch(args: list[str], timeout: float = 60) -> tuple[float, str]:
    """Seconds from spawn to the tools/list answer, and what the process wrote on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24_", "UV_", "VIRTUAL_ENV"))}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*args, "--demo"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path.home(),  # hosts start servers wherever they like: never in the project
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else ""), daemon=True)
    reader.start()
    proc.stdin.write(json.dumps(MESSAGES[0]) + "\n")
    proc.stdin.flush()
    elapsed = None
    deadline = started + timeout
    while time.perf_counter() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        answer = json.loads(line)
        if answer.get("id") == 1:
            proc.stdin.write("".join(json.dumps(m) + "\n" for m in MESSAGES[1:]))
            proc.stdin.flush()
        elif answer.get("id") == 2:
            elapsed = time.perf_counter() - started
            break
    proc.stdin.close()
    proc.wait(timeout)
    reader.join(timeout)
    if elapsed is None:
        raise RuntimeError(f"{args[0]} never answered tools/list: {''.join(err)[-500:]}")
    return elapsed, "".join(err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--project", type=Path, default=ROOT)
    parser.add_argument("--command", action="append", default=[], help="another launch to compare: LABEL=COMMAND")
    options = parser.parse_args()
    todo = commands(options.project.resolve())
    for extra in options.command:
        label, _, command = extra.partition("=")
        todo[label] = shlex.split(command)
    for args in todo.values():
        launch(args)  # warm-up: the first `uv run` may sync, and the OS caches the files
    times: dict[str, list[float]] = {name: [] for name in todo}
    stderr: dict[str, str] = {}
    for _ in range(options.runs):
        order = list(todo)
        random.shuffle(order)  # no command always follows the same one
        for name in order:
            elapsed, err = launch(todo[name])
            times[name].append(elapsed)
            stderr[name] = err.strip()
    fastest = min(statistics.median(t) for t in times.values())
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "runs": options.runs,
        "launch": {
            name: {
                "median_ms": round(statistics.median(t) * 1000, 1),
                "min_ms": round(min(t) * 1000, 1),
                "vs_fastest": round(statistics.median(t) / fastest, 2),
                "stderr": stderr[name][:200],
            }
            for name, t in times.items()
        },
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
