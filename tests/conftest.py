"""Shared fixtures: anyio on asyncio, the test CA, the stand-in portal over HTTP and HTTPS, an
environment without B24_* variables, and the SDK's metaschema check made once per schema.

What the fixtures need is imported inside them: every pytest process loads this file first, the xdist controller
(which runs no test) included, so what it imports at the top delays every worker's start.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures of the team tests (issue 13)
from tests.values import CODE, TOKEN

if TYPE_CHECKING:
    import trustme

    from tests.portal import StandInPortal


def _end_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # An xdist worker has sent its results by the time it exits, yet tearing down its interpreter (every module and
    # object the suite made) held the run's end ~0.4 s. Registered here, before the session starts, this runs after
    # every atexit handler registered later (pytest's own included) and ends the worker without that teardown. Its
    # exit code is not read: the controller has each worker's outcome already, and a worker that ends before sending
    # it is reported as crashed. The controller, whose exit code is the run's, exits normally.
    atexit.register(_end_now)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def metaschema_checked_once() -> Iterator[None]:
    """The SDK's Client checks each tool's outputSchema against the JSON Schema metaschema once per session
    (~20 ms a schema); the suite opens ~70 in-memory sessions over the same four schemas, so a schema that passed
    is not checked again. Every structuredContent is still validated against its schema, and the schemas'
    validity is test_contract's own test."""
    from jsonschema.validators import Draft202012Validator

    check = Draft202012Validator.check_schema
    passed: set[str] = set()

    def check_once(cls: type[Draft202012Validator], schema: Any, *args: Any, **kwargs: Any) -> None:
        key = json.dumps(schema, sort_keys=True, default=repr)
        if key not in passed:
            check(schema, *args, **kwargs)  # raises for an invalid schema, which is then never remembered
            passed.add(key)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Draft202012Validator, "check_schema", classmethod(check_once))
        yield


@pytest.fixture
def no_b24_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process's environment without its B24_* variables: a developer's own settings must not reach a test."""
    for name in [k for k in os.environ if k.startswith("B24_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The test CA that signs the stand-in portal's certificate."""
    import trustme

    return trustme.CA()


@pytest.fixture
def https_portal(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInPortal]:
    """The stand-in portal over HTTPS, with the suite's webhook code and bot token.

    This process trusts it the way a user trusts an on-premise portal's CA: SSL_CERT_FILE, which the server's
    HTTP client reads when it is made. Subprocesses get their own environment (see tests/e2e/helpers.py).
    """
    from tests.portal import StandInPortal

    with StandInPortal(tls_ca=ca, webhook_code=CODE, bot_token=TOKEN) as p:
        monkeypatch.setenv("SSL_CERT_FILE", str(p.ca_pem_path))
        yield p


@pytest.fixture
def http_portal() -> Iterator[StandInPortal]:
    """The stand-in portal over plain HTTP on loopback (allowed for 127.0.0.1 only)."""
    from tests.portal import StandInPortal

    with StandInPortal(webhook_code=CODE, bot_token=TOKEN) as p:
        yield p
