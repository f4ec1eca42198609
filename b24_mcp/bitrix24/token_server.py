"""One request to the OAuth token server: the refresh grant, its answer read within bounds, the new pair or what
went wrong, named. A request that was sent and got no whole answer is said to be lost: Bitrix24 may have rotated
the pair all the same.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from pydantic_core import from_json

from ..errors import AuthError, B24Error, UpstreamError, clean_code, clean_text
from ..logs import redact
from .wire import exchange, redirect_error

if TYPE_CHECKING:
    import httpx

TOKEN_ANSWER_MAX = 64 * 1024  # a token answer is a few hundred bytes; anything larger is not one
REAUTHORISE = (
    "re-authorise the application in Bitrix24 (open or reinstall it), then put the new tokens in B24_ACCESS_TOKEN "
    "and B24_REFRESH_TOKEN"
)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float | None = None
    obtained_at: float = 0.0

    def __repr__(self) -> str:  # reprs land in logs and tracebacks (str() uses it too)
        return f"TokenPair(tokens=***, expires_at={self.expires_at}, obtained_at={self.obtained_at})"


def lost_error(token_host: str, why: str) -> AuthError:
    """The token request was sent and no whole answer came back: the server may have rotated the pair anyway."""
    return AuthError(
        f"Renewing the access token at the OAuth server {token_host} failed after the request was sent ({why}). "
        "Bitrix24 may have rotated the token pair all the same, which would leave b24-mcp's refresh token dead: try "
        f"again, and if the tools then report invalid_grant, {REAUTHORISE}.",
        code="renewal_lost",
    )


async def request_pair(
    http: httpx.AsyncClient, token_url: str, client_id: str, client_secret: str, refresh_token: str, deadline: float
) -> TokenPair:
    """One refresh at the OAuth server, by `deadline`: the new pair, or an AuthError saying what to do."""
    form = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    token_host = urlsplit(token_url).netloc
    where = f"the OAuth server {token_host}"
    left = max(0.0, deadline - time.monotonic())
    try:
        with anyio.fail_after(left):
            # Bounded like every answer b24-mcp reads, each phase within the whole renewal's limit (not one
            # B24_TIMEOUT): a slow answer still carries the rotated pair.
            reply = await exchange(
                http, token_url, host=token_host, data=form, limit=TOKEN_ANSWER_MAX, timeout=max(left, 0.05)
            )
    except TimeoutError:
        raise lost_error(token_host, f"no answer within {left:.3g} s") from None
    except B24Error as err:  # wire's words name the host and the cause (unreachable, too large, corrupt, ...)
        if isinstance(err, UpstreamError) and err.retryable and not err.sent:
            raise AuthError(f"Could not reach {where} to renew the access token: {err} Try again.") from None
        if isinstance(err, UpstreamError) and err.retryable:
            raise lost_error(token_host, str(err).rstrip(".")) from None
        raise AuthError(f"Renewing the access token failed: {err}") from None
    if reply.location is not None:
        raise AuthError(str(redirect_error(token_host, reply.status, reply.location, "B24_OAUTH_SERVER")))
    try:
        data: Any = from_json(reply.body, allow_inf_nan=True)  # pydantic's parser: nesting bounded
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise AuthError(
            f"{where} answered HTTP {reply.status} with something other than a JSON object while renewing "
            "the access token; try again later."
        )
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if isinstance(access, str) and isinstance(refresh, str) and access and refresh:
        # A pair is a pair, whatever else the answer says (an `error` beside it, a bad expiry): it was rotated.
        return TokenPair(access, refresh, _expiry(data), time.time())
    code = data.get("error")
    if code == "invalid_grant":
        raise AuthError(
            f"The OAuth refresh token is no longer valid (invalid_grant): {REAUTHORISE}. The saved token pair was "
            "left as it was.",
            code="invalid_grant",
        )
    if code == "invalid_client":
        raise AuthError(
            "Bitrix24 rejected the application's credentials (invalid_client): check B24_CLIENT_ID and "
            "B24_CLIENT_SECRET against the application's settings.",
            code="invalid_client",
        )
    if code:
        shown = clean_code(code) or "(an unreadable code)"
        said = data.get("error_description")
        description = clean_text(said, 200, mask=redact) if isinstance(said, str) else ""
        raise AuthError(f"{where} refused to renew the access token: {shown} {description}".strip(), code=shown)
    raise AuthError(f"{where} answered without a new token pair (HTTP {reply.status}).")


def _expiry(data: dict[str, Any]) -> float | None:
    """When the access token expires (time.time()), from `expires` or `expires_in`; None if neither is sound."""
    now = time.time()
    expires = data.get("expires")
    if isinstance(expires, (int, float)) and not isinstance(expires, bool) and math.isfinite(expires):
        return float(expires)
    expires_in = data.get("expires_in")
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and math.isfinite(expires_in):
        return now + float(expires_in)
    return None
