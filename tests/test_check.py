"""`b24-mcp check` in this process: its verdicts and exit codes, and that it never prints a secret.

The stdio round trip to a spawned server is replaced by the same server in memory (the SDK's Client takes
either), so every case runs check's own code; the real spawn is proven once in tests/e2e/test_check.py.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from mcp import StdioServerParameters
from mcp.client import stdio

from b24_mcp import check
from b24_mcp import settings as config
from b24_mcp.errors import ConfigError
from b24_mcp.server import build_server
from tests.portal import StandInPortal
from tests.values import CODE, TOKEN, webhook_vars


@pytest.fixture(autouse=True)
def in_memory_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """check's stdio_client(params) gives the server `params` describes, built in this process."""

    def server(params: StdioServerParameters, errlog: Any = None) -> Any:
        try:
            settings: config.Settings | ConfigError = config.load(params.env or {}, demo="--demo" in params.args)
        except ConfigError as err:
            settings = err
        return build_server(settings)

    monkeypatch.setattr(stdio, "stdio_client", server)


def run(*, demo: bool = False, dialog: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = check.run(["--demo"] if demo else [], demo=demo, dialog=dialog, env=env or {}, out=out)
    return code, out.getvalue()


def test_demo_check_passes() -> None:
    code, out = run(demo=True)
    assert code == 0, out
    assert "✓ get_chat(chat5): DEMO DATA" in out and "Verdict: all good" in out


def test_refused_chat_is_a_verdict_naming_the_fix(https_portal: StandInPortal) -> None:
    code, out = run(dialog="chat7", env=webhook_vars(https_portal.webhook_url))
    assert code == 1
    assert "ACCESS_DENIED" in out and "Add the bot to that chat" in out
    assert CODE not in out and TOKEN not in out


def test_without_dialog_it_still_proves_the_server_starts(https_portal: StandInPortal) -> None:
    code, out = run(env=webhook_vars(https_portal.webhook_url))
    assert code == 0, out
    assert "lists get_chat" in out and "--dialog" in out
    assert https_portal.count() == 0


def test_untrusted_certificate_points_at_ssl_cert_file(
    https_portal: StandInPortal, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    code, out = run(dialog="chat5", env=webhook_vars(https_portal.webhook_url))
    assert code == 1 and "✗ portal:" in out and "SSL_CERT_FILE" in out
    assert "Verdict: the portal cannot be reached" in out


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    code, out = run(env={"B24_WEBHOOK_URL": f"http://portal.example.com/rest/1/{CODE}/"})
    assert code == 2
    assert "B24_WEBHOOK_URL must use https://" in out
    assert CODE not in out and "Traceback" not in out


def test_malformed_dialog_is_explained_not_blamed_on_the_portal() -> None:
    code, out = run(demo=True, dialog="chat 5")
    assert code == 1
    assert "dialogId 'chat 5' is not valid" in out and "Remove the spaces" in out
    assert "Verdict: get_chat failed" in out
