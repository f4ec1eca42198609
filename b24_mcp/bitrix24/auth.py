"""How each request is signed, and how a rejected one is recovered: one object, chosen once from the settings.

Webhook or OAuth is decided here and nowhere else (like httpx's `Auth`): the client asks it for the method's URL
and body and hands it back any rejection. A webhook signs in the URL path and cannot recover; OAuth signs with
`auth=` and recovers within the call's deadline (`oauth.OAuthSession.recover`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..settings import OAuthConfig, WebhookConfig

if TYPE_CHECKING:
    pass


class TokenSession(Protocol):
    """The live OAuth pair (`oauth.OAuthSession`, over the token file or Redis)."""

    async def access_token(self) -> str: ...

    async def recover(self, rejected_access_token: str, deadline: float) -> str: ...


class Auth:
    """The interface the client uses; `Webhook` and `OAuth` below are the two kinds."""

    oauth: bool = False
    host: str
    origin: str  # scheme://host[:port], for the warm-up connection
    setting: str  # the variable that holds the portal's address, named in redirect errors

    def url(self, method: str) -> str:
        raise NotImplementedError

    async def sign(self, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The body to send and the credential it carries (handed back to `recover`)."""
        raise NotImplementedError

    async def recover(self, used: str | None, deadline: float) -> None:
        """After a rejection that `errors.classify` marked "reauth": make the next `sign` use a live token."""
        raise NotImplementedError


class Webhook(Auth):
    """`https://{portal}/rest/{user}/{code}/{method}`: the code in the path is the signature."""

    setting = "B24_WEBHOOK_URL"

    def __init__(self, config: WebhookConfig) -> None:
        self.host = config.host
        self.origin = config.origin
        self._base = config.url
        self._urls: dict[str, str] = {}

    def url(self, method: str) -> str:
        url = self._urls.get(method)
        if url is None:
            url = self._urls[method] = self._base + method
        return url

    async def sign(self, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        return params, None

    async def recover(self, used: str | None, deadline: float) -> None:  # pragma: no cover - never classified so
        raise AssertionError("a webhook has nothing to renew")


class OAuth(Auth):
    """`https://{portal}/rest/{method}` with `auth={access_token}`; the token pair lives in an `OAuthSession`."""

    oauth = True
    setting = "B24_PORTAL_URL"

    def __init__(self, config: OAuthConfig, session: TokenSession) -> None:
        self.host = config.host
        self.origin = config.origin
        self._base = f"{config.portal_url}/rest/"
        self.session = session

    def url(self, method: str) -> str:
        return self._base + method

    async def sign(self, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        token = await self.session.access_token()
        return {**params, "auth": token}, token

    async def recover(self, used: str | None, deadline: float) -> None:
        assert used is not None
        await self.session.recover(used, deadline)
