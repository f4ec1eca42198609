"""Errors the model (or a person) reads, and the one table (`classify`) that decides which are worth a retry.

Every anticipated failure is a `B24Error` whose text is safe to show (no secret; it names the field, setting or
Bitrix24 code); anything else is a bug, reported without its text. What Bitrix24 says is untrusted: it is kept
only as one short printable line, so a hostile portal can neither steer the model nor repaint a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from .logs import redact


class B24Error(Exception):
    """An anticipated failure; `str(err)` is the message for the model, already free of secrets."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def gave_up(self, tries: int) -> B24Error:
        """The same error, saying how many tries were made (a new exception: raised ones are never edited)."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.message = f"{self.message} (gave up after {tries} tries)"
        Exception.__init__(clone, clone.message)
        return clone


class ConfigError(B24Error):
    """A setting (environment variable or command-line option) is missing or malformed."""


class ConfigProblems(ConfigError):
    """Every bad setting found at once; `problems` holds one line for each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            numbered = "; ".join(f"({i}) {p}" for i, p in enumerate(self.problems, 1))
            message = f"{len(self.problems)} settings need fixing: {numbered}"
        super().__init__(message)


def problems_of(err: ConfigError) -> tuple[str, ...]:
    """One line for each bad setting an error carries."""
    return err.problems if isinstance(err, ConfigProblems) else (str(err),)


T = TypeVar("T")


class Problems:
    """Every problem of a group of settings, collected so that all are reported at once (`raise_any`); each is
    noted with the setting it is about (None: the whole setup), so that a caller can order them as its table."""

    def __init__(self) -> None:
        self.noted: list[tuple[str | None, str]] = []

    @property
    def lines(self) -> list[str]:
        return [line for _, line in self.noted]

    def add(self, line: str, setting: str | None = None) -> None:
        self.noted.append((setting, line))

    def take(self, check: Callable[[], T], setting: str | None = None) -> T | None:
        """The check's value, or None with its problems noted (about `setting`)."""
        try:
            return check()
        except ConfigError as err:
            self.noted.extend((setting, line) for line in problems_of(err))
            return None

    def raise_any(self) -> None:
        if self.noted:
            raise ConfigProblems(self.lines)


class InputError(B24Error):
    """A tool argument is invalid; nothing was sent to Bitrix24."""


class PortalError(B24Error):
    """Bitrix24 answered with an error code (`{"error": CODE, "error_description": TEXT}`)."""

    code: str

    def __init__(self, message: str, *, code: str, status: int | None = None, description: str = "") -> None:
        super().__init__(message, code=code, status=status)
        self.description = description


class UpstreamError(B24Error):
    """The portal (or a proxy on the way) could not be reached, timed out, or sent no Bitrix24 answer.

    `retryable` marks the failures where the request may simply not have got through (connection errors,
    timeouts, 5xx pages without a Bitrix24 code); every method b24-mcp calls only reads, so repeating is safe.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False, sent: bool = True) -> None:
        super().__init__(message, status=status)
        self.retryable = retryable
        self.sent = sent  # False: the request never left (no connection); True: it may have been acted on


class AnswerError(UpstreamError):
    """The portal answered, but not with what the method's documentation describes (nothing to show).

    Final whatever its status: a 503 too large to read is not a rate limit, and fetching it again costs as much."""


class AuthError(B24Error):
    """OAuth tokens could not be refreshed (refresh token dead, wrong client credentials, ...)."""


# --- what each Bitrix24 code means for the person at the keyboard ------------------------------------------------
# `{dialogId}`, `{botId}`, `{messageId}` and `{method}` are filled from the call; no secret is ever a placeholder.

_PERSONAL_BOT = (
    "Reading messages needs a bot of type 'personal' (or 'supervisor'): register one with "
    'imbot.v2.Bot.register, fields.type "personal" (see the README, "Which bot to register"), and set B24_BOT_ID '
    "and B24_BOT_TOKEN to it."
)

HINTS: dict[str, str] = {
    "BOT_TOKEN_NOT_SPECIFIED": (
        "Webhook calls to imbot.v2 need the bot's token: pass botToken (the token chosen at imbot.v2.Bot.register) "
        "or set B24_BOT_TOKEN."
    ),
    "BOT_ID_REQUIRED": "Pass botId or set B24_BOT_ID to the bot's id.",
    "BOT_NOT_FOUND": (
        "There is no bot with id {botId} on this portal: check the id (imbot.v2.Bot.list) and fix botId or B24_BOT_ID."
    ),
    "BOT_OWNERSHIP_ERROR": (
        "Bot {botId} was registered by another application or webhook, or botToken does not match it; only the "
        "registering webhook/app with the bot's own token may use it. Check B24_BOT_TOKEN and the webhook."
    ),
    "BOT_TYPE_NOT_ALLOWED": "Bot {botId} may not read messages. " + _PERSONAL_BOT,
    "MESSAGE_NOT_FOUND": (
        "There is no message {messageId} (deleted, or a wrong id). Take message ids from get_messages or from "
        "get_chat's lastMessageId, or call get_messages with the dialogId instead."
    ),
    "MESSAGE_ACCESS_DENIED": (
        "The bot may not read message {messageId}: it is not a participant of that chat, or it cannot see the "
        "chat's history from before it joined. Add the bot to the chat, or ask about a chat the bot is in."
    ),
    "FILE_NOT_FOUND": (
        "There is no file {fileId} on the portal's Drive (deleted, or a wrong id). Take file ids from a message's "
        "params.FILE_ID in get_messages or get_message."
    ),
    "FILE_ACCESS_ERROR": (
        "The bot may not download file {fileId}: it is not a participant of the chat the file was shared in. Add the "
        "bot to that chat, or ask about a file from a chat the bot is in."
    ),
    "ACCESS_DENIED": (
        "The bot is not a participant of {dialogId}: add the bot to that chat in Bitrix24, or ask about a chat the "
        "bot is in."
    ),
    "NO_AUTH_FOUND": (
        "Bitrix24 rejected the credentials: the webhook code in B24_WEBHOOK_URL is wrong or the webhook was deleted. "
        "Copy the inbound webhook URL again from Bitrix24."
    ),
    "INVALID_CREDENTIALS": "The user behind the webhook or token lacks the rights for this method; use an admin's.",
    "INVALID_CREDENTIALS 401": (
        "Bitrix24 rejected the credentials: the webhook code in B24_WEBHOOK_URL is wrong, or the webhook's user was "
        "deactivated. Copy the inbound webhook URL again from Bitrix24."
    ),
    "insufficient_scope": (
        "The webhook or application lacks the imbot scope: edit it in Bitrix24 and add the 'imbot' permission."
    ),
    "expired_token": (
        "A webhook uses no OAuth token, so the address is not a webhook's: B24_WEBHOOK_URL must be the inbound "
        "webhook URL as Bitrix24 shows it (https://…/rest/{{user id}}/{{code}}/)."
    ),
    "invalid_token": (
        "A webhook uses no OAuth token, so the address is not a webhook's: B24_WEBHOOK_URL must be the inbound "
        "webhook URL as Bitrix24 shows it (https://…/rest/{{user id}}/{{code}}/)."
    ),
    "user_access_error": "The portal administrator restricted the application to certain users; ask for access.",
    "QUERY_LIMIT_EXCEEDED": "The portal's request limit is exhausted; wait a few seconds before trying again.",
    "OPERATION_TIME_LIMIT": "This method used up its time budget on the portal; wait before calling it again.",
    "OVERLOAD_LIMIT": (
        "Bitrix24 blocked this portal's REST API for overload. It is a manual block that only Bitrix24 support can "
        "lift: contact support. Retrying will not help."
    ),
    "INTERNAL_SERVER_ERROR": "Bitrix24 failed internally; try again later, and tell the portal's admin if it persists.",
    "ERROR_UNEXPECTED_ANSWER": "Bitrix24 failed internally; try again later, and tell the portal's admin if it lasts.",
    "INVALID_REQUEST": "Bitrix24 requires https: use an https:// address in B24_WEBHOOK_URL or B24_PORTAL_URL.",
    "PORTAL_DELETED": (
        "The portal was deleted, or (on-premise) its public part is closed: disable 'Temporary closure of the public "
        "part of the site' in the Main module settings."
    ),
    "ERROR_METHOD_NOT_FOUND": (
        "This portal does not know {method}: it predates chat bots v2, or the im/imbot modules are off."
    ),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": "b24-mcp does not batch calls; please report this as a bug.",
    "ERROR_BATCH_LENGTH_EXCEEDED": "b24-mcp does not batch calls; please report this as a bug.",
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": "The portal's REST manifest is unavailable; tell the portal's admin.",
}

PLAN_HINT = (
    "As the description says, this portal's plan does not include the REST API; no b24-mcp setting changes that."
)

# OAuth mode: the same codes mean something else, and the advice must name the OAuth settings, never the webhook.
OAUTH_REJECTED = (
    "Bitrix24 rejected the OAuth access token even after b24-mcp renewed it: re-authorise the application and put "
    "the new tokens in B24_ACCESS_TOKEN and B24_REFRESH_TOKEN, or check B24_CLIENT_ID and B24_CLIENT_SECRET "
    "(the shared token pair is kept in B24_TOKEN_FILE)."
)
OAUTH_HINTS: dict[str, str] = {
    "NO_AUTH_FOUND": OAUTH_REJECTED,
    "invalid_token": OAUTH_REJECTED,
    "INVALID_CREDENTIALS 401": OAUTH_REJECTED,
    "expired_token": "The OAuth access token has expired and could not be renewed; re-authorise the application.",
}

DESCRIPTION_MAX = 300  # Bitrix24 says its descriptions are not meant to be shown raw: one short line
_CODE = re.compile(r"[A-Za-z0-9_.]{1,64}")
# ECMA-48 escapes, 7-bit (ESC ...) and 8-bit (C1): CSI with its parameters; OSC/DCS/SOS/PM/APC strings with their
# payload (an OSC's payload is a window title or a hyperlink) up to BEL or ST, or to the end when unterminated;
# any other ESC with its intermediate and final bytes.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Controls that are not whitespace, and every format character (zero-width, bidi overrides and isolates, Unicode
# tags, the BOM; Unicode's category Cf): dropped, not turned into spaces, so the text reads as it would be shown
# and a secret split by them is still one word for the redactor. Variation selectors and Hangul fillers are
# invisible too (they can smuggle text).
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff"
    "\uffa0\ufff0-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]"
)


def printable(line: str) -> str:
    """One line as a terminal shows it and nothing else: escapes, controls and line breaks out, spacing kept."""
    return _INVISIBLE.sub("", _ESCAPES.sub("", line)).translate(_BREAKS)


_BREAKS = {ord(c): " " for c in "\t\n\v\f\r\x85\u2028\u2029"}
_UNSHOWABLE = re.compile(f"[\x7f-\x9f\u2028\u2029]|{_INVISIBLE.pattern}")


def json_showable(text: str) -> str:
    """JSON text with every control, format and line-separator character that JSON leaves raw written as a \\u
    escape: the same JSON to a parser, and nothing a terminal or a host would act on."""
    return _UNSHOWABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def clean_text(text: str, limit: int = DESCRIPTION_MAX, mask: Callable[[str], str] | None = None) -> str:
    """Untrusted text as one short printable line: terminal escapes and control characters out, length bounded.

    `mask` (the redactor) runs on the cleaned text, before it is cut: a secret split by an escape or a zero-width
    character is whole again by then, and is masked rather than half shown. With a mask, a word cut at the work
    window is dropped too (it may be a secret's first half, which no mask recognises).
    """
    window = text[: limit * 4]  # bounded work; what lies beyond is never shown anyway
    cut = len(window) < len(text)
    words = _INVISIBLE.sub("", _ESCAPES.sub("", window)).split()
    if cut and words and mask is not None:
        words.pop()
    text = " ".join(words)
    if mask is not None:
        text = mask(text)
    return text if len(text) <= limit and not cut else text[: limit - 1] + "…"


def hint_for(code: str | None, status: int | None, *, oauth: bool) -> str | None:
    """What to do about a Bitrix24 code: the advice for this code at this HTTP status (where the status changes its
    meaning), in this authorisation mode, else the code's own."""
    tables = (OAUTH_HINTS, HINTS) if oauth else (HINTS,)
    keys = (f"{code} {status}", str(code)) if status else (str(code),)
    return next((table[key] for key in keys for table in tables if key in table), None)


def error_parts(error: object, description: object) -> tuple[str | None, str]:
    """The code and the description of a Bitrix24 error, as a string pair or as an object {code, message}."""
    if isinstance(error, dict):
        description = error.get("message", error.get("description", description))
        error = error.get("code")
    return clean_code(error), description if isinstance(description, str) else ""


def clean_code(code: object) -> str | None:
    """Bitrix24's `error` field if it looks like an error code; None for anything else (it is not repeated)."""
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


def portal_error(
    code: str,
    description: str,
    *,
    status: int | None,
    host: str,
    call: dict[str, object],
    oauth: bool = False,
    secrets: Iterable[str] = (),
) -> PortalError:
    """Build the message for a Bitrix24 error answer: the code, Bitrix24's own words, and what to do next.

    `description` is Bitrix24's raw text; it is cleaned, then masked (the process's secrets and the call's own
    `secrets`), so no escape sequence can hide a secret from the redactor.
    """
    said = clean_text(description, mask=lambda text: redact(text, secrets))
    where = f"HTTP {status} from {host}" if status else host
    message = f"Bitrix24 error {code} ({where})" + (f": {said}" + ("" if said[-1] in ".!?…" else ".") if said else ".")
    hint = hint_for(code, status, oauth=oauth)
    if code == "ACCESS_DENIED" and re.search(r"\b(?:plan|tariff)s?\b", said, re.IGNORECASE):
        hint = PLAN_HINT  # the same code when the portal's plan has no REST API at all
    dialog = str(call.get("dialogId", ""))
    if code == "ACCESS_DENIED" and hint == HINTS[code] and dialog.isdigit():
        hint += (
            f' Note: "{dialog}" names the personal chat with user {dialog}; for the group chat with id {dialog}, '
            f'use dialogId "chat{dialog}".'
        )
    if hint:
        fill = {"dialogId": "that chat", "botId": "?", "messageId": "?", "fileId": "?", "method": "this method"}
        fill.update({k: str(v) for k, v in call.items() if k in fill})
        message += " " + hint.format_map(fill)
    return PortalError(message, code=code, status=status, description=said)


def available_later(err: PortalError, method: str, wait: float | None) -> PortalError:
    """A method's time-budget refusal (OPERATION_TIME_LIMIT) that cannot be waited out: when it is available again."""
    when = "in a few minutes" if wait is None else f"in {wait:.0f} s"
    return PortalError(
        f"{err.message} {method} is available again {when}; Bitrix24 limits each method's total run time.",
        code=err.code,
        status=err.status,
        description=err.description,
    )


# --- which failures are worth another try --------------------------------------------------------------------------

Rule = Literal["final", "rate_limit", "transient", "wait_reset", "reauth"]


@dataclass(frozen=True)
class Policy:
    """How often a rule may repeat a call, and the back-off between tries (exponential, jittered)."""

    tries: int  # extra tries after the first refusal of this kind
    base: float = 0.0
    cap: float = 0.0
    why: str = ""  # what the call is waiting for, shown as MCP progress


POLICIES: dict[Rule, Policy] = {
    # The request did not run: the portal's bucket is full. Ours is resynchronised, and the call backs off.
    "rate_limit": Policy(7, 0.5, 8.0, "the portal's rate limit"),
    # It may not have got through (connection errors, timeouts, 5xx pages without a code); all calls only read.
    "transient": Policy(2, 0.25, 1.0, "the portal to recover"),
    # The method's time budget resets at `operating_reset_at`: waited out once, if it fits the deadline.
    "wait_reset": Policy(1),
    # OAuth: another window may have rotated the token; re-read it (or renew it) and repeat once.
    "reauth": Policy(1),
    "final": Policy(0),
}

REJECTED_TOKEN_CODES = frozenset({"expired_token", "invalid_token", "NO_AUTH_FOUND"})


def classify(err: B24Error, *, oauth: bool) -> Rule:
    """The retry rule for an error, by Bitrix24's code first and the HTTP status only when there is no code."""
    if isinstance(err, PortalError):
        if err.code == "QUERY_LIMIT_EXCEEDED":
            return "rate_limit"
        if err.code == "OPERATION_TIME_LIMIT":
            return "wait_reset"
        if oauth and err.code in REJECTED_TOKEN_CODES:
            return "reauth"
        return "final"  # OVERLOAD_LIMIT, ACCESS_DENIED, BOT_*, auth errors: repeating changes nothing
    if isinstance(err, UpstreamError) and not isinstance(err, AnswerError):
        if err.status in (429, 503):
            return "rate_limit"
        if err.retryable:
            return "transient"
    return "final"
