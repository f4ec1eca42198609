"""Logging to stderr only, and the redactor that keeps secrets out of every log line and every message.

stdout carries JSON-RPC and nothing else. One filter on the stderr handler masks webhook codes in URLs and every
secret the configuration knows of, whatever logger the record comes from, so no library's line can leak one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Iterable

_WEBHOOK_CODE = re.compile(r"(/rest/[0-9]+/)[A-Za-z0-9_-]+")
_QUERY_SECRET = re.compile(
    r"((?:auth|access_token|refresh_token|client_secret|botToken|token)=)[^&\s\"']+", re.IGNORECASE
)
_WORD_CHAR = re.compile(r"[^\W_]")  # letters and digits: a secret followed by `_` is still whole
ROTATED_KEPT = 8  # OAuth tokens rotate hourly; the newest few stay masked, older ones are long dead


def _whole(secret: str) -> str:
    """The secret as a pattern that does not match inside a longer word (checked only where it has a word edge).

    Whole values, whatever their length: a short token is still masked, and an ordinary word that happens to
    contain it is not garbled."""
    head = r"(?<![^\W_])" if _WORD_CHAR.match(secret[0]) else ""
    tail = r"(?![^\W_])" if _WORD_CHAR.match(secret[-1]) else ""
    return head + re.escape(secret) + tail


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = "|".join(_whole(s) for s in sorted(set(secrets), key=len, reverse=True) if s)
    return re.compile(alternatives) if alternatives else None


class Redactor:
    """Masks known secrets and secret-shaped URL parts in text."""

    def __init__(self) -> None:
        self._fixed: set[str] = set()
        self._rotating: list[str] = []
        self._compiled: re.Pattern[str] | None = None

    def add(self, secrets: Iterable[str | None]) -> None:
        """Secrets for the life of the process (the configuration's)."""
        self._fixed.update(s for s in secrets if s)
        self._compiled = _pattern([*self._fixed, *self._rotating])

    def add_rotating(self, secrets: Iterable[str | None]) -> None:
        """Tokens that replace earlier ones (OAuth): only the newest ROTATED_KEPT are kept."""
        self._rotating = [*(s for s in secrets if s), *self._rotating][:ROTATED_KEPT]
        self._compiled = _pattern([*self._fixed, *self._rotating])

    def __call__(self, text: str, extra: Iterable[str | None] = ()) -> str:
        """`text` masked; `extra` (a caller's own `botToken`) only in this text, so the set cannot grow per call."""
        for pattern in (self._compiled, _pattern(s for s in extra if s)):
            if pattern is not None:
                text = pattern.sub("***", text)
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
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2"):  # httpx logs each URL at INFO: a webhook's has its code
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # B24_LOG_LEVEL=DEBUG means b24-mcp's own lines (one per portal request), not the libraries' internals.
    for library in ("mcp", "asyncio", "filelock", "redis", "anyio", "uvicorn", "jwt"):
        logging.getLogger(library).setLevel(max(logging.getLevelName(level), logging.INFO))


def fingerprint(token: str) -> str:
    """Identifies a token without revealing it: which seed a saved pair descends from."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]
