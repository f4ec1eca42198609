"""A host's launch of b24-mcp in each documented form: spawn -> initialize -> tools/list answered; prints JSON.

    uv run python bench/launch.py [--runs N] [--clone PATH]

The forms the README documents, from a clone (PyPI's `uvx b24-mcp` cannot be timed before it is published):
- `uvx --from PATH b24-mcp`, with uv's cache warm (one launch before timing, as a host's second start);
- `b24-mcp`, the command `uv tool install -c PATH/constraints.txt PATH` put on PATH (into a temporary tool directory);
- `uv run --directory PATH b24-mcp`, the development form (it checks the lock and syncs the project each time);
- `uv run --no-sync --directory PATH b24-mcp` and `PATH/.venv/bin/b24-mcp`, a clone's environment as it is.
Each launch's stderr is kept: a host shows it in its log, so a quiet launch is part of the figure.
Each is started the way a host starts it: from another directory, with only PATH, HOME and the B24_* variables
in its environment (and the machine's CA settings, for uv), and spoken to with hand-written JSON-RPC over its
pipes. The runs are interleaved so that drift on a busy machine hits every form alike. Run by hand; never in
the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.values import initialize  # noqa: E402

WEBHOOK = {
    "B24_WEBHOOK_URL": "https://acme.bitrix24.com/rest/1/launchBENCHcode/",
    "B24_BOT_ID": "456",
    "B24_BOT_TOKEN": "launchBENCHtoken",
}
INIT = initialize("launch", 0)


def host_env(**extra: str) -> dict[str, str]:
    """PATH, HOME, the B24_* variables; and this machine's CA settings, which uv needs to reach the index here."""
    kept = ("PATH", "HOME", "SSL_CERT_FILE", "SSL_CERT_DIR")
    return {**{k: os.environ[k] for k in kept if k in os.environ}, **WEBHOOK, **extra}


def answer(proc: subprocess.Popen[str], ident: int) -> dict[str, Any]:
    assert proc.stdout is not None
    for line in proc.stdout:
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == ident:
            return message
    raise RuntimeError(f"the server exited before answering request {ident}")


def launch(command: list[str], env: dict[str, str], cwd: Path, stderr: Any = subprocess.DEVNULL) -> float:
    """Seconds from spawn to the tools/list answer."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd, text=True
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(json.dumps(INIT) + "\n")
        proc.stdin.flush()
        answer(proc, 0)
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}) + "\n")
        proc.stdin.flush()
        tools = answer(proc, 1)["result"]["tools"]
        elapsed = time.perf_counter() - started
        assert [t["name"] for t in tools][:1] == ["get_chat"], tools
        return elapsed
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="launches per form (default 21)")
    parser.add_argument("--clone", type=Path, default=ROOT, help="the clone to install from (default: this one)")
    args = parser.parse_args()
    clone = str(args.clone.resolve())
    uv = shutil.which("uv")
    assert uv, "uv must be on PATH"
    with tempfile.TemporaryDirectory() as scratch:
        tools = Path(scratch) / "tools"
        install = [uv, "tool", "install", "--compile-bytecode", "-c", str(Path(clone) / "constraints.txt"), clone]
        tool_env = {"UV_TOOL_DIR": str(tools), "UV_TOOL_BIN_DIR": str(tools / "bin")}
        subprocess.run(install, check=True, capture_output=True, env={**os.environ, **tool_env})
        forms = {
            "uvx --from PATH b24-mcp": ([uv.replace("/uv", "/uvx"), "--from", clone, "b24-mcp"], host_env()),
            "uv tool install PATH, then b24-mcp": ([str(tools / "bin" / "b24-mcp")], host_env()),
            "uv run --directory PATH b24-mcp": ([uv, "run", "--directory", clone, "b24-mcp"], host_env()),
            "uv run --no-sync --directory PATH b24-mcp": (
                [uv, "run", "--no-sync", "--directory", clone, "b24-mcp"],
                host_env(),
            ),
            "PATH/.venv/bin/b24-mcp": ([str(Path(clone) / ".venv" / "bin" / "b24-mcp")], host_env()),
        }
        if not Path(forms["uvx --from PATH b24-mcp"][0][0]).exists():
            forms["uvx --from PATH b24-mcp"] = ([uv, "tool", "run", "--from", clone, "b24-mcp"], host_env())
        times: dict[str, list[float]] = {name: [] for name in forms}
        said: dict[str, str] = {}
        for name, (command, env) in forms.items():  # warm: uv's cache, the tool's environment, the file cache
            launch(command, env, Path(scratch))
            with tempfile.TemporaryFile("w+") as err:  # what a host's log gets from one (warm) launch
                launch(command, env, Path(scratch), err)
                err.seek(0)
                said[name] = err.read().strip()[:200]
        for _ in range(args.runs):
            for name, (command, env) in forms.items():
                times[name].append(launch(command, env, Path(scratch)))
    results = {
        "python": sys.version.split()[0],
        "uv": subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip(),
        "runs": args.runs,
        "spawn_to_tools_list_ms": {
            name: {
                "median": round(statistics.median(t) * 1000, 1),
                "min": round(min(t) * 1000, 1),
                "max": round(max(t) * 1000, 1),
            }
            for name, t in times.items()
        },
        "stderr_of_a_launch": said,
    }
    results["fastest"] = min(times, key=lambda name: statistics.median(times[name]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
