"""How one portal's answer to a REST call is read: the method's validated result, or the error it carries.

One pass of pydantic over the whole body for the method's result type; only when that fails is the body read
loosely, for the Bitrix24 error it still carries or for what of it is set aside as not documented
(`mismatches.py`). Errors name the host and the HTTP status and never quote the portal's data.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from ..errors import AnswerError, UpstreamError, clean_text, error_parts, portal_error
from ..logs import redact
from .mismatches import Unusable, accept
from .models import Answer, Mismatch
from .wire import MAX_JSON_VALUES, Reply, redirect_error, too_many_values

log = logging.getLogger("b24_mcp.client")

Report = list[Mismatch]
"""What of an answer was set aside as not documented (`mismatches.py`), in the order of the answer."""


@functools.cache
def adapter(result: Any) -> TypeAdapter[Any]:
    """The one-pass parser of a whole body for a method's result type (built once per type)."""
    return TypeAdapter(Answer[result])


class Answers:
    """Reads the answers of one portal for one kind of auth, and remembers when each method's time budget resets."""

    def __init__(self, host: str, setting: str, oauth: bool) -> None:
        self.host = host
        self._setting = setting  # the variable that holds the portal's address, named in redirect errors
        self._oauth = oauth
        self.reset_at: dict[str, float] = {}  # method -> unix time its time budget resets

    def read(
        self, method: str, reply: Reply, call: dict[str, Any], result: Any, secrets: list[str]
    ) -> tuple[Any, Report]:
        status = reply.status
        if reply.location is not None:
            raise redirect_error(self.host, status, reply.location, self._setting)
        if too_many_values(reply.body):
            raise AnswerError(
                f"Bitrix24 at {self.host} answered HTTP {status} with more than {MAX_JSON_VALUES:,} JSON values; "
                "no Bitrix24 answer holds that many, and reading it would take hundreds of MB. Nothing to show.",
                status=status,
            )
        report: Report = []
        try:
            answer = adapter(result).validate_json(reply.body)
        except ValidationError as err:
            answer, report = self._salvage(method, reply, call, result, err, secrets)
        if b"NaN" in reply.body or b"Infinity" in reply.body:
            _refuse_non_standard_numbers(self.host, reply.body)
        self._note_time(method, answer.time)
        if answer.error is not None:
            self._raise_portal_error(method, answer, status, call, secrets)
        if not 200 <= status < 300:
            raise UpstreamError(
                f"Bitrix24 at {self.host} answered HTTP {status} with JSON that is not a Bitrix24 error; a proxy or "
                "the portal itself may be failing. Try again later.",
                status=status,
                retryable=status >= 500,
            )
        if "result" not in answer.model_fields_set or answer.result is None:
            raise AnswerError(f"Bitrix24 at {self.host} answered {method} with JSON without a 'result' field.")
        return answer.result, report

    def _salvage(
        self, method: str, reply: Reply, call: dict[str, Any], result: Any, err: ValidationError, secrets: list[str]
    ) -> tuple[Answer[Any], Report]:
        """The body did not parse as the method's answer: find the Bitrix24 error it still carries, or accept it
        with what does not fit set aside, or say why it cannot be read."""
        status, problems = reply.status, err.errors(include_url=False, include_input=False)
        invalid_json = [p for p in problems if p["type"] == "json_invalid"]
        if invalid_json:
            detail = str(invalid_json[0].get("ctx", {}).get("error", ""))
            if "recursion limit" in detail:
                raise AnswerError(
                    f"Bitrix24 at {self.host} answered HTTP {status} with JSON nested too deeply to read (more than "
                    "about 200 levels); no Bitrix24 answer looks like that.",
                    status=status,
                )
            ok = 200 <= status < 300
            raise (AnswerError if ok else UpstreamError)(
                f"Bitrix24 at {self.host} answered HTTP {status} with {_describe(reply.body)} instead of a "
                f"Bitrix24 {'result' if ok else 'error'}" + ("." if ok else "; a proxy or the portal may be failing."),
                status=status,
                retryable=status >= 500,
            )
        loose: Answer[Any] = adapter(Any).validate_json(reply.body)
        if loose.error is not None:
            self._raise_portal_error(method, loose, status, call, secrets)
        if loose.result is None:  # an answer without a result: `read` says so
            return loose, []
        try:
            value, report = accept(result, loose.result, method)
        except Unusable as unusable:
            where = "; ".join(unusable.problems)
        except ValidationError as still:  # what setting fields aside uncovered, pass after pass
            where = "; ".join(f"result.{p['loc']}: {p['msg']}" for p in still.errors(include_url=False)[:5])
        else:
            if report:
                log.warning(
                    "%s answered %d value(s) unlike its documentation, set aside: %s",
                    method,
                    len(report),
                    ", ".join(entry["path"] for entry in report[:10]),
                )
            return loose.model_copy(update={"result": value}), [Mismatch.model_construct(**e) for e in report]
        # Name the fields and the documented types; never echo values (they are the portal's data).
        raise AnswerError(
            f"Bitrix24 at {self.host} answered {method} without what b24-mcp needs to show it ({where}). "
            "Please report it with your portal's version."
        )

    def _raise_portal_error(
        self, method: str, answer: Answer[Any], status: int, call: dict[str, Any], secrets: list[str]
    ) -> None:
        code, description = error_parts(answer.error, answer.error_description)
        if code in (None, "0") and answer.error in ("", "0") and description:  # PHP's error with a message only
            said = clean_text(description, mask=lambda text: redact(text, secrets))
            raise AnswerError(
                f"Bitrix24 at {self.host} answered HTTP {status} with an error that has no code: {said}",
                status=status,
                retryable=status >= 500,
            )
        if code is None:
            raise AnswerError(
                f"Bitrix24 at {self.host} answered HTTP {status} with an error whose code is not readable "
                "(not repeated here); a proxy or the portal may be failing.",
                status=status,
                retryable=status >= 500,
            )
        raise portal_error(
            code,
            description,
            status=status,
            host=self.host,
            call={
                **{k: v for k, v in call.items() if k in ("dialogId", "botId", "messageId", "fileId")},
                "method": method,
            },
            oauth=self._oauth,
            secrets=secrets,
        )

    def _note_time(self, method: str, block: object) -> None:
        """Remember when the method's time budget resets (self-hosted portals may not say)."""
        if isinstance(block, dict):
            reset_at = block.get("operating_reset_at")
            if isinstance(reset_at, (int, float)) and not isinstance(reset_at, bool):
                self.reset_at[method] = float(reset_at)


def _refuse_non_standard_numbers(host: str, body: bytes) -> None:
    """NaN and Infinity are not JSON; a lax parser would pass them on and the wire would turn them into null."""
    try:
        from_json(body, allow_inf_nan=False)
    except ValueError:
        raise AnswerError(
            f"Bitrix24 at {host} answered with NaN or Infinity, which are not JSON numbers; nothing to show."
        ) from None


def _describe(body: bytes) -> str:
    """What came back, in a few words, without quoting it."""
    head = body.lstrip()[:200].lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<")):
        return "an HTML page"
    return f"a body that is not JSON ({len(body)} bytes, perhaps cut short)"
