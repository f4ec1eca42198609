"""Logging to stderr only, with secrets masked on the way out.

stdout carries JSON-RPC and nothing else, so every record goes to stderr. Two things would leak a secret
if left alone: httpx logs each request URL at INFO (a webhook URL holds its code), and any message might
quote a token. So httpx's loggers are held at WARNING, and one filter on the handler masks webhook codes in
URLs and every secret the configuration knows of, whatever logger the record comes from.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

_WEBHOOK_CODE = re.compile(r"(/rest/[0-9]+/)[A-Za-z0-9_-]+")
_QUERY_SECRET = re.compile(r"((?:auth|access_token|refresh_token|client_secret|botToken)=)[^&\s\"']+", re.IGNORECASE)


class Redactor:
    """Masks known secrets and secret-shaped URL parts in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str | None]) -> None:
        # Short strings would mask innocent text; real codes and tokens are long.
        self._secrets.update(s for s in secrets if s and len(s) >= 6)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        text = _WEBHOOK_CODE.sub(r"\1***", text)
        return _QUERY_SECRET.sub(r"\1***", text)


redact = Redactor()


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # Tracebacks quote exception text; render them now so they pass through the redactor too.
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message)
        record.args = None
        return True


def setup(level: str) -> None:
    """Install the stderr handler before the SDK's own `basicConfig` (which then leaves it be)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
