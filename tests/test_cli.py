"""The command line, in this process: options, help and version, the start-up lines; Ctrl-C in a real terminal.

Options are checked by argparse (`command_line`; a host's launch skips it) before anything heavy is imported.
Serving is replaced by a stand-in here, so what `main` does before serving (the terminal notice, the start-up log
lines) is seen without a process; only Ctrl-C needs one, in a pseudo-terminal, as a person at a keyboard would
press it.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from b24_mcp import check, cli, transport
from tests.values import ROOT, TOKEN, webhook_vars


@pytest.mark.parametrize("port", ["70000", "0", "http"])
def test_bad_port_is_one_line_naming_the_option(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--demo", "--transport", "streamable-http", "--port", port])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and out == ""
    assert "--port" in err and "1 to 65535" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "option", [["--port", "9000"], ["--host", "127.0.0.1"], ["--allowed-host", "a"], ["--no-auth"]]
)
def test_http_options_without_the_http_transport_are_refused(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A stdio server started instead would ignore them silently; the fix is named instead."""
    for transport_option in ([], ["--transport", "stdio"]):
        with pytest.raises(SystemExit) as info:
            cli.main(["--demo", *transport_option, *option])
        out, err = capsys.readouterr()
        assert info.value.code == 2 and out == ""
        assert f"{option[0]} applies to Streamable HTTP only: add --transport streamable-http" in err


def test_every_bad_http_setting_is_reported_at_once(
    no_b24_env: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad tokens file no longer hides a bad Redis URL, an incomplete JWT setup or a bad timeout."""
    tokens = tmp_path / "tokens"
    tokens.write_text("not a digest\n")
    env = webhook_vars(
        B24_HTTP_TOKENS_FILE=str(tokens),
        B24_HTTP_ISSUER="https://login.example.com/",
        B24_REDIS_URL="redis://127.0.0.1:6379/zero",
        B24_TIMEOUT="soon",
    )
    for name, value in env.items():
        no_b24_env.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        cli.main(["--transport", "streamable-http", "--host", "0.0.0.0", "--allowed-host", "bad host"])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert info.value.code == 2 and out == ""
    assert all(line.startswith("b24-mcp: error: ") for line in lines), lines
    for says in (
        "--allowed-host 'bad host'",
        "line 1 is not a SHA-256 hex digest",
        "JWT authentication needs",
        "B24_REDIS_URL",
        "B24_TIMEOUT",
    ):
        assert sum(says in line for line in lines) == 1, (says, lines)


def test_a_malformed_redis_url_refuses_an_http_start(
    no_b24_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replica must not serve without the state it shares (over stdio it is reported by the tools instead)."""
    no_b24_env.setenv("B24_REDIS_URL", "redis://:hunter2pass@127.0.0.1:6379/zero")
    with pytest.raises(SystemExit) as info:
        cli.main(["--demo", "--transport", "streamable-http"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "hunter2pass" not in err
    (line,) = err.splitlines()
    assert line.startswith("b24-mcp: error: B24_REDIS_URL must end with a database number")


def test_a_port_in_use_is_one_line_naming_the_option(
    no_b24_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as info:
            cli.main(["--demo", "--transport", "streamable-http", "--port", str(port)])
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert f"b24-mcp: error: 127.0.0.1 port {port} is in use" in err and "--port" in err
    assert "Errno" not in err and "Traceback" not in err


def test_an_unusable_redis_refuses_to_start_naming_it(
    no_b24_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replica with a bad Redis (down, wrong password) says so at start-up, not at the first call."""
    from tests.redis_server import free_port

    no_b24_env.setenv("B24_REDIS_URL", f"redis://:hunter2pass@127.0.0.1:{free_port()}/0")
    with pytest.raises(SystemExit) as info:
        cli.main(["--demo", "--transport", "streamable-http", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert info.value.code == 1
    (line,) = [line for line in err.splitlines() if "b24-mcp: error:" in line]
    assert "Redis at 127.0.0.1:" in line and "B24_REDIS_URL" in line and "hunter2pass" not in err


# -- options in either position, version, help ---------------------------------------------------------------------


@pytest.fixture
def check_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """check.run replaced by a recorder that exits 0."""
    calls: list[dict[str, Any]] = []

    def record(argv: list[str], **kwargs: Any) -> int:
        calls.append({"argv": argv, **kwargs})
        return 0

    monkeypatch.setattr(check, "run", record)
    return calls


@pytest.mark.parametrize(
    "argv",
    [["--demo", "check"], ["check", "--demo"], ["--demo", "check", "--demo"], ["check", "--demo", "--dialog", "chat5"]],
)
def test_demo_works_before_and_after_check(argv: list[str], check_calls: list[dict[str, Any]]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    (call,) = check_calls
    assert call["demo"] is True and call["argv"] == ["--demo"]


def test_check_without_demo_is_not_the_demo(check_calls: list[dict[str, Any]]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["check", "--dialog", "chat7"])
    assert check_calls[0]["demo"] is False and check_calls[0]["dialog"] == "chat7"


@pytest.mark.parametrize("argv", [[], ["--demo"]])
def test_a_hosts_launch_is_read_as_the_parser_reads_it(argv: list[str]) -> None:
    """`b24-mcp` and `b24-mcp --demo` are read without argparse (cli.LAUNCHES): to the same options."""
    from b24_mcp.command_line import parse

    assert tuple(argv) in cli.LAUNCHES
    assert vars(cli.options(argv)) == vars(parse(argv))


@pytest.mark.parametrize("argv", [["-V"], ["--version"], ["check", "-V"], ["--demo", "--version"]])
def test_version(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert info.value.code == 0 and err == ""
    assert out.startswith("b24-mcp ") and len(out.splitlines()) == 1


def test_help_command_prints_the_help_and_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["help"])
    out, _ = capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert capsys.readouterr().out == out
    assert out.startswith("usage: b24-mcp") and "b24-mcp check --demo" in out
    from b24_mcp.variables import VARIABLES

    for var in VARIABLES:
        assert f"  {var.name} " in out and var.meaning in out


@pytest.mark.parametrize("argv", [["help"], ["help", "check"], ["help", "token"]])
def test_help_fits_80_columns(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    cli.main(argv)
    wide = [line for line in capsys.readouterr().out.splitlines() if len(line) > 80]
    assert wide == []


@pytest.mark.parametrize(
    ("argv", "meant"),
    [(["chek"], "check"), (["tokn"], "token"), (["--transport", "http-streamable"], "streamable-http")],
)
def test_a_mistyped_choice_gets_a_suggestion(argv: list[str], meant: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and f"did you mean {meant}?" in capsys.readouterr().err


def test_help_check_prints_checks_help(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["help", "check"])
    out, _ = capsys.readouterr()
    assert out.startswith("usage: b24-mcp check") and "--dialog" in out and "Exit 0" in out


def test_check_exit_status_is_checks(no_b24_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["check"])  # nothing configured: a configuration problem, before any spawn
    assert info.value.code == 2
    assert "✗ configuration: no Bitrix24 connection is configured" in capsys.readouterr().out


# -- what the server says before it serves -------------------------------------------------------------------------


class Terminal:
    """stdin as a terminal (or not)."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture
def serving(no_b24_env: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Serving replaced by a recorder; the root logger restored after (cli.main installs its handler)."""
    served: list[Any] = []
    no_b24_env.setattr(transport, "serve_stdio", served.append)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield served
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("tty", [True, False])
def test_a_terminal_gets_one_line_and_the_server_still_serves(
    tty: bool, serving: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(tty))
    cli.main(["--demo"])
    out, err = capsys.readouterr()
    assert len(serving) == 1 and out == ""
    assert err.count(cli.TTY_NOTICE) == (1 if tty else 0)
    assert "\n" not in cli.TTY_NOTICE and "b24-mcp check --demo" in cli.TTY_NOTICE and "README" in cli.TTY_NOTICE


def test_start_up_logs_the_mode_and_host_once_and_unknown_variables_once(
    serving: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(False))
    for name, value in webhook_vars(B24_LOG_LEVEL="INFO", B24_BOT_TOKN=TOKEN).items():
        monkeypatch.setenv(name, value)
    cli.main([])
    err = capsys.readouterr().err
    lines = err.splitlines()
    started = [line for line in lines if "INFO b24_mcp: starting over stdio" in line]
    assert len(started) == 1 and started[0].endswith("starting over stdio: webhook mode, portal acme.bitrix24.com")
    unknown = [line for line in lines if "unknown variable" in line]
    assert len(unknown) == 1 and "WARNING" in unknown[0]
    assert unknown[0].endswith(
        "ignoring unknown variable B24_BOT_TOKN (did you mean B24_BOT_TOKEN?): b24-mcp does not read it"
    )
    assert TOKEN not in err


def test_debug_logs_b24_mcps_lines_not_the_libraries(
    serving: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(False))
    monkeypatch.setenv("B24_LOG_LEVEL", "DEBUG")
    cli.main(["--demo"])
    for name in ("mcp.server.lowlevel.server", "asyncio", "filelock", "b24_mcp.client"):
        logging.getLogger(name).debug("a debug line from %s", name)
    err = capsys.readouterr().err
    assert "a debug line from b24_mcp.client" in err
    assert "from mcp" not in err and "from asyncio" not in err and "from filelock" not in err
    logging.getLogger("filelock").warning("a warning from filelock")
    assert "a warning from filelock" in capsys.readouterr().err  # held back at DEBUG only, not silenced


def test_every_configuration_problem_is_logged_once(
    serving: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(False))
    monkeypatch.setenv("B24_WEBHOOK_URL", "https://your-portal.bitrix24.com/rest/1/x/")
    monkeypatch.setenv("B24_TIMEOUT", "soon")
    cli.main([])
    problems = [line for line in capsys.readouterr().err.splitlines() if "configuration problem" in line]
    assert len(problems) == 2
    assert "B24_WEBHOOK_URL still holds an example value" in problems[0] and "B24_TIMEOUT" in problems[1]


# -- Ctrl-C, in a pseudo-terminal ----------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.skipif(os.name != "posix", reason="a pseudo-terminal needs POSIX")
def test_ctrl_c_in_a_terminal_ends_the_server_at_once_without_a_traceback() -> None:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the server, its stdin, stdout and stderr the terminal
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "b24_mcp", "--demo"])  # noqa: S606 - our own server
    seen = b""

    def read_for(seconds: float) -> None:
        """Whatever the terminal shows within `seconds`; always takes them (a spin here once ran out the bound
        below in microseconds, while the child, its terminal already closed, had not quite exited)."""
        nonlocal seen
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if select.select([fd], [], [], left)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:  # the child closed the terminal: nothing more to read
                    time.sleep(max(0.0, end - time.monotonic()))
                    return

    try:
        for _ in range(600):  # bounded: 60 s for the notice, which is printed before anything heavy
            read_for(0.1)
            if b"Ctrl-C quits" in seen:
                break
        assert cli.TTY_NOTICE.encode() in seen.replace(b"\r\n", b"\n"), seen
        os.write(fd, b"\x03")  # the terminal turns it into SIGINT for the foreground process
        status = None
        for _ in range(600):  # bounded; the server is not timed, only required to end
            read_for(0.1)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            pytest.fail("the server was still running after Ctrl-C")
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == cli.INTERRUPTED
    assert b"Traceback" not in seen and b"KeyboardInterrupt" not in seen
