"""Errors the model (or a person) reads: what went wrong, and what to do next.

Every failure b24-mcp anticipates is a `B24Error` whose text is safe to show: it never carries a secret,
and it names the field, setting or Bitrix24 code involved. The tool layer turns any `B24Error` into an
`isError` result with one helper; anything else is a bug and is reported without its text.
"""

from __future__ import annotations


class B24Error(Exception):
    """An anticipated failure; `str(err)` is the message for the model, already free of secrets."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class ConfigError(B24Error):
    """A setting (environment variable or command-line option) is missing or malformed."""


class InputError(B24Error):
    """A tool argument is invalid; nothing was sent to Bitrix24."""


class PortalError(B24Error):
    """Bitrix24 answered with an error code (`{"error": CODE, "error_description": TEXT}`)."""

    def __init__(self, message: str, *, code: str, status: int | None = None, description: str = "") -> None:
        super().__init__(message, code=code, status=status)
        self.code: str = code
        self.description = description


class TransportError(B24Error):
    """The portal could not be reached, timed out, or sent something that is not a Bitrix24 answer.

    `retryable` marks the failures where the request may simply not have got through (connection errors,
    timeouts, 5xx pages without a Bitrix24 code); get_chat only reads, so repeating it is safe.
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message, status=status)
        self.retryable = retryable


class AuthError(B24Error):
    """OAuth tokens could not be refreshed (refresh token dead, wrong client credentials, ...)."""


# What each code on imbot.v2.Chat.get's page (and its system table) means for the person at the keyboard.
# `{dialogId}` and `{botId}` are filled from the call; no secret is ever a placeholder.
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
    "ACCESS_DENIED": (
        "The bot is not a participant of {dialogId}: add the bot to that chat in Bitrix24, or ask about a chat the "
        "bot is in. (If the description says REST is only on commercial plans, the portal's plan has no REST API.)"
    ),
    "NO_AUTH_FOUND": (
        "Bitrix24 rejected the credentials: the webhook code in B24_WEBHOOK_URL is wrong or the webhook was deleted "
        "(OAuth: the access token is not valid). Copy the inbound webhook URL again from Bitrix24."
    ),
    "INVALID_CREDENTIALS": "The user behind the webhook or token lacks the rights for this method; use an admin's.",
    "insufficient_scope": (
        "The webhook or application lacks the imbot scope: edit it in Bitrix24 and add the 'imbot' permission."
    ),
    "expired_token": "The OAuth access token has expired and could not be renewed; re-authorise the application.",
    "invalid_token": "The OAuth access token is not valid; re-authorise the application.",
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
        "This portal does not know imbot.v2.Chat.get: it predates chat bots v2, or the im/imbot modules are off."
    ),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": "b24-mcp does not batch calls; please report this as a bug.",
    "ERROR_BATCH_LENGTH_EXCEEDED": "b24-mcp does not batch calls; please report this as a bug.",
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": "The portal's REST manifest is unavailable; tell the portal's admin.",
}


def portal_error(code: str, description: str, *, status: int | None, host: str, call: dict[str, object]) -> PortalError:
    """Build the message for a Bitrix24 error answer: the code, Bitrix24's own words, and what to do next."""
    # Bitrix24 says its description is not meant to be shown raw: keep it to one short line.
    said = " ".join(description.split())[:300]
    where = f"HTTP {status} from {host}" if status else host
    message = f"Bitrix24 error {code} ({where})" + (f": {said}." if said else ".")
    hint = HINTS.get(code)
    if hint:
        message += " " + hint.format_map(
            {"dialogId": call.get("dialogId", "that chat"), "botId": call.get("botId", "?")}
        )
    return PortalError(message, code=code, status=status, description=said)
