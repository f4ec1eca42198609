"""The stand-in portal's logic (b24_mcp.standin) as pure calls: shapes and error codes as the imbot.v2 pages give them.

No sockets: `StandIn.answer` and `StandIn.token` are called directly, so these run in milliseconds. The HTTP and
httpx faces are covered by the end-to-end and tool tests; one test here drives the demo's httpx face.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from b24_mcp import demo
from b24_mcp import settings as config
from b24_mcp.standin import ALL_SCOPES, OAuthApp, StandIn
from b24_mcp.standin_data import (
    BOT_CODE,
    BOT_ID,
    CHATS,
    DOC_CHAT,
    INJECTION_MESSAGE_ID,
    MEMBERS,
    MESSAGES,
    NULL_USER,
    PORTAL_CHAT,
    USERS,
)

CODE = "hookCODE123"
TOKEN = "botTOKEN456"
HOOK = f"/rest/1/{CODE}/"
APP = OAuthApp("local.app", "appSECRET", "access0", "refresh0")

# Field sets from the docs' examples: entities.md#user (a User), chat-message-get(-context).md (a Message), and the
# snake_case duplicates a portal's Message serializer adds.
USER_FIELDS = set(
    "id active name firstName lastName workPosition color avatar gender birthday extranet bot connector "
    "externalAuthId status idle lastActivityDate absent departments phones type website email".split()
)
MESSAGE_FIELDS = set(
    "id chatId chat_id authorId author_id date text isSystem uuid forward params viewedByOthers".split()
)
BOT_BRIEF = set("id code type isHidden isSupportOpenline isReactionsEnabled backgroundId language".split())
BOT_OWNER = BOT_BRIEF | set("moduleId appId eventMode countMessage countCommand countChat countUser".split())

COMMON_ERRORS: list[tuple[dict[str, Any], int, str]] = [  # every imbot.v2 chat method checks these first (webhook mode)
    ({"botId": None}, 400, "BOT_ID_REQUIRED"),
    ({"botId": 457}, 400, "BOT_NOT_FOUND"),
    ({"botToken": None}, 400, "BOT_TOKEN_NOT_SPECIFIED"),
    ({"botToken": "someone-elses"}, 403, "BOT_OWNERSHIP_ERROR"),
]


@pytest.fixture
def portal() -> StandIn:
    return StandIn(webhook_code=CODE, bot_token=TOKEN)


def call(portal: StandIn, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """A webhook POST as the bot; a parameter given as None is left out."""
    body = {k: v for k, v in {"botId": BOT_ID, "botToken": TOKEN, **params}.items() if v is not None}
    return portal.answer("POST", HOOK + method, {}, body)


def ok(answer: tuple[int, dict[str, Any]]) -> Any:
    status, body = answer
    assert status == 200, body
    assert body["time"]["operating_reset_at"] > body["time"]["start"]
    return body["result"]


def refused(answer: tuple[int, dict[str, Any]], status: int, code: str) -> None:
    assert answer[0] == status, answer
    assert answer[1]["error"] == code and answer[1]["error_description"]
    assert "result" not in answer[1] and "time" not in answer[1]


def chat_ids(dialog: str) -> list[int]:
    return sorted(m["id"] for m in MESSAGES if m["chatId"] == CHATS[dialog]["id"])


# -- the data --------------------------------------------------------------------------------------------------
def test_data_is_consistent() -> None:
    assert CHATS["chat5"] is PORTAL_CHAT and BOT_ID == config.DEMO_BOT_ID
    for dialog, chat in CHATS.items():
        assert chat["dialogId"] == dialog and chat["messageCount"] == len(chat_ids(dialog))
        assert len(MEMBERS[dialog]) == chat["userCounter"], dialog  # chat5: 3, as the doc's example says
        assert set(chat["managerList"]) | set(chat["muteList"]) <= set(MEMBERS[dialog])
        assert chat_ids(dialog)[-1] == chat["lastMessageId"], dialog
    assert BOT_ID not in MEMBERS["chat7"] and all(BOT_ID in MEMBERS[d] for d in ("chat5", "chat12", "1"))
    for message in MESSAGES:
        assert set(message) == MESSAGE_FIELDS
        dialog = next(d for d, c in CHATS.items() if c["id"] == message["chatId"])
        assert message["authorId"] in MEMBERS[dialog] or (message["authorId"] == 0 and message["isSystem"])
    assert len({m["id"] for m in MESSAGES}) == len(MESSAGES)  # ids are portal-wide


def test_users_are_documented_user_objects() -> None:
    for uid, user in USERS.items():
        assert user["id"] == uid and set(user) == USER_FIELDS
    bot = USERS[BOT_ID]
    assert bot["bot"] is True and bot["type"] == "bot" and bot["externalAuthId"] == "bot"
    assert all(u["type"] == "user" and u["bot"] is False for uid, u in USERS.items() if uid != BOT_ID)


def test_chat5_holds_a_support_conversation_with_a_system_message() -> None:
    ids = chat_ids("chat5")
    assert ids[0] >= 775 and ids[-1] == 789 and 6 <= len(ids) <= 10
    messages = [m for m in MESSAGES if m["chatId"] == 5]
    assert any(m["isSystem"] and m["authorId"] == 0 for m in messages)
    assert {m["authorId"] for m in messages} == {0, *MEMBERS["chat5"]}


def test_the_injection_sample_is_a_users_message_in_chat5() -> None:
    (message,) = (m for m in MESSAGES if m["id"] == INJECTION_MESSAGE_ID)
    assert message["chatId"] == 5 and not message["isSystem"] and USERS[message["authorId"]]["type"] == "user"
    assert "Ignore all previous instructions" in message["text"] and "token" in message["text"]


# -- routing and auth ------------------------------------------------------------------------------------------
def test_chat_get_by_webhook(portal: StandIn) -> None:
    assert ok(call(portal, "imbot.v2.Chat.get", dialogId="chat5")) == {
        "recentConfig": {"chatId": 5, "sections": ["default"]},
        "chat": PORTAL_CHAT,
    }
    assert ok(call(portal, "imbot.v2.Chat.get.json", dialogId="1"))["chat"]["messageType"] == "P"
    assert ok(call(portal, "IMBOT.V2.CHAT.GET", dialogId="chat12"))["chat"]["id"] == 12  # names ignore case


def test_chat_get_errors(portal: StandIn) -> None:
    for params, status, code in COMMON_ERRORS:
        refused(call(portal, "imbot.v2.Chat.get", dialogId="chat5", **params), status, code)
    for dialog in ("chat7", "chat404", None):  # not a member, no such chat, no dialogId
        refused(call(portal, "imbot.v2.Chat.get", dialogId=dialog), 403, "ACCESS_DENIED")


def test_query_and_body_are_read_together_but_a_get_has_only_its_query(portal: StandIn) -> None:
    query = {"botId": "456", "botToken": TOKEN}
    assert ok(portal.answer("POST", HOOK + "imbot.v2.Chat.get", query, {"dialogId": "chat5"}))["chat"]["id"] == 5
    assert ok(portal.answer("GET", HOOK + "imbot.v2.Chat.get", {**query, "dialogId": "1"}, {}))["chat"]["id"] == 31
    get_with_body = portal.answer("GET", HOOK + "imbot.v2.Chat.get", query, {"dialogId": "chat5"})
    refused(get_with_body, 403, "ACCESS_DENIED")


def test_wrong_webhook_unknown_method_and_bad_path(portal: StandIn) -> None:
    body = {"botId": BOT_ID, "botToken": TOKEN, "dialogId": "chat5"}
    refused(portal.answer("POST", "/rest/1/wrongCODE/imbot.v2.Chat.get", {}, body), 401, "NO_AUTH_FOUND")
    refused(portal.answer("POST", f"/rest/2/{CODE}/imbot.v2.Chat.get", {}, body), 401, "NO_AUTH_FOUND")
    refused(call(portal, "imbot.v2.Chat.delete", dialogId="chat5"), 404, "ERROR_METHOD_NOT_FOUND")
    refused(portal.answer("POST", "/elsewhere", {}, body), 404, "ERROR_METHOD_NOT_FOUND")
    refused(StandIn(bot_token=TOKEN).answer("POST", HOOK + "scope", {}, {}), 401, "NO_AUTH_FOUND")  # no webhook


def test_oauth_needs_a_live_token_and_no_bot_token() -> None:
    portal = StandIn(bot_token=TOKEN, oauth=APP)
    body = {"botId": BOT_ID, "dialogId": "chat5"}
    assert ok(portal.answer("POST", "/rest/imbot.v2.Chat.get", {}, {**body, "auth": "access0"}))["chat"]["id"] == 5
    assert ok(portal.answer("POST", "/rest/imbot.v2.Chat.get.json", {"auth": "access0"}, body))["chat"]["id"] == 5
    refused(portal.answer("POST", "/rest/imbot.v2.Chat.get", {}, body), 401, "NO_AUTH_FOUND")
    refused(portal.answer("POST", "/rest/imbot.v2.Chat.get", {}, {**body, "auth": "stale"}), 401, "expired_token")
    portal.expire_access_tokens()
    refused(portal.answer("POST", "/rest/imbot.v2.Chat.get", {}, {**body, "auth": "access0"}), 401, "expired_token")
    no_app = StandIn(webhook_code=CODE, bot_token=TOKEN)
    refused(no_app.answer("POST", "/rest/scope", {}, {"auth": "access0"}), 401, "NO_AUTH_FOUND")


def test_answers_are_copies(portal: StandIn) -> None:
    ok(call(portal, "imbot.v2.Chat.get", dialogId="chat5"))["chat"]["name"] = "changed"
    ok(call(portal, "imbot.v2.Chat.User.list", dialogId="chat5"))[0]["name"] = "changed"
    assert DOC_CHAT["name"] == "Support Chat" and "changed" not in {u["name"] for u in USERS.values()}


# -- imbot.v2.Chat.User.list -----------------------------------------------------------------------------------
def test_user_list_is_the_members_as_user_objects(portal: StandIn) -> None:
    users = ok(call(portal, "imbot.v2.Chat.User.list", dialogId="chat5"))
    assert isinstance(users, list) and [u["id"] for u in users] == MEMBERS["chat5"]  # joining order by default
    assert all(set(u) == USER_FIELDS for u in users) and users[0] == USERS[BOT_ID]
    assert len(ok(call(portal, "imbot.v2.Chat.User.list", dialogId="chat12"))) == CHATS["chat12"]["userCounter"]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ({"id": "ASC"}, [BOT_ID, 1, 2]),
        ({"id": "DESC"}, [2, 1, BOT_ID]),
        ({"userId": "ASC"}, [1, 2, BOT_ID]),
        ({"userId": "desc"}, [BOT_ID, 2, 1]),
        ({"lastSendMessageId": "DESC"}, [2, 1, BOT_ID]),  # Tom wrote 789, Anna 786, the bot 779
        ({"lastSendMessageId": "ASC"}, [BOT_ID, 1, 2]),
        ({"name": "ASC"}, [BOT_ID, 1, 2]),  # not a sortable field: the default order
        ({"id": "SIDEWAYS"}, [BOT_ID, 1, 2]),
    ],
)
def test_user_list_order(portal: StandIn, order: dict[str, str], expected: list[int]) -> None:
    users = ok(call(portal, "imbot.v2.Chat.User.list", dialogId="chat5", order=order))
    assert [u["id"] for u in users] == expected


@pytest.mark.parametrize(("limit", "count"), [(None, 11), (1, 1), (5, 5), (0, 1), (-3, 1), (500, 11), ("4", 4)])
def test_user_list_limit_is_clamped_to_1_200(portal: StandIn, limit: object, count: int) -> None:
    assert len(ok(call(portal, "imbot.v2.Chat.User.list", dialogId="chat12", limit=limit))) == count


def test_user_list_errors(portal: StandIn) -> None:
    for params, status, code in COMMON_ERRORS:
        refused(call(portal, "imbot.v2.Chat.User.list", dialogId="chat5", **params), status, code)
    refused(call(portal, "imbot.v2.Chat.User.list", dialogId="chat7"), 403, "ACCESS_DENIED")
    refused(call(portal, "imbot.v2.Chat.User.list", dialogId="chat404"), 403, "ACCESS_DENIED")


# -- imbot.v2.Chat.Message.getContext and .get -----------------------------------------------------------------
def context(portal: StandIn, message_id: object, span: object = None) -> dict[str, Any]:
    result: dict[str, Any] = ok(call(portal, "imbot.v2.Chat.Message.getContext", messageId=message_id, range=span))
    return result


def test_get_context_shape(portal: StandIn) -> None:
    result = context(portal, 789)
    assert set(result) == {"messages", "users", "hasPrevPage", "hasNextPage"}
    ids = [m["id"] for m in result["messages"]]
    assert ids == chat_ids("chat5") and ids == sorted(ids)  # the whole chat, oldest to newest
    assert all(set(m) == MESSAGE_FIELDS and m["chatId"] == 5 for m in result["messages"])
    assert [u["id"] for u in result["users"]] == [1, 2, BOT_ID]  # the authors; the system's 0 is nobody
    assert all(set(u) == USER_FIELDS for u in result["users"])
    assert result["hasPrevPage"] is False and result["hasNextPage"] is False


def test_get_context_window_and_pages(portal: StandIn) -> None:
    ids = chat_ids("chat5")
    middle = context(portal, ids[3], 1)
    assert [m["id"] for m in middle["messages"]] == ids[2:5]
    assert middle["hasPrevPage"] is True and middle["hasNextPage"] is True
    oldest = context(portal, ids[0], 2)
    assert [m["id"] for m in oldest["messages"]] == ids[:3]
    assert oldest["hasPrevPage"] is False and oldest["hasNextPage"] is True
    newest = context(portal, ids[-1], 2)
    assert [m["id"] for m in newest["messages"]] == ids[-3:]
    assert newest["hasPrevPage"] is True and newest["hasNextPage"] is False
    assert {u["id"] for u in newest["users"]} == {m["authorId"] for m in newest["messages"]}
    near_end = context(portal, ids[-2], 1)
    assert [m["id"] for m in near_end["messages"]] == ids[-3:] and near_end["hasNextPage"] is False


@pytest.mark.parametrize(("span", "size"), [(0, 3), (-5, 3), (1, 3), ("2", 5), (50, 8), (51, 8), ("x", 8)])
def test_get_context_range_is_clamped_to_1_50(portal: StandIn, span: object, size: int) -> None:
    assert len(context(portal, chat_ids("chat5")[3], span)["messages"]) == size


def test_get_context_of_the_personal_dialog(portal: StandIn) -> None:
    result = context(portal, 905)
    assert [m["id"] for m in result["messages"]] == chat_ids("1") and result["messages"][-1]["id"] == 905
    assert [u["id"] for u in result["users"]] == [1, BOT_ID]
    assert any(m["forward"] for m in result["messages"])  # one is forwarded from chat5


@pytest.mark.parametrize("method", ["imbot.v2.Chat.Message.getContext", "imbot.v2.Chat.Message.get"])
def test_message_reading_errors(portal: StandIn, method: str) -> None:
    for params, status, code in COMMON_ERRORS:
        refused(call(portal, method, messageId=789, **params), status, code)
    for missing in (123456, None, "abc", 0):
        refused(call(portal, method, messageId=missing), 400, "MESSAGE_NOT_FOUND")
    refused(call(portal, method, messageId=640), 403, "MESSAGE_ACCESS_DENIED")  # chat7: the bot is not in it
    for kind in ("bot", "openline"):
        plain = StandIn(webhook_code=CODE, bot_token=TOKEN, bot_type=kind)
        refused(call(plain, method, messageId=789), 403, "BOT_TYPE_NOT_ALLOWED")
    ok(call(StandIn(webhook_code=CODE, bot_token=TOKEN, bot_type="supervisor"), method, messageId=789))


def test_message_get(portal: StandIn) -> None:
    result = ok(call(portal, "imbot.v2.Chat.Message.get", messageId=INJECTION_MESSAGE_ID))
    assert set(result) == {"message", "user"}
    assert result["message"]["id"] == INJECTION_MESSAGE_ID and result["user"] == USERS[2]
    assert isinstance(result["message"]["uuid"], str) and result["message"]["params"] == []
    system = ok(call(portal, "imbot.v2.Chat.Message.get", messageId="775"))
    assert system["message"]["isSystem"] is True and system["message"]["authorId"] == 0
    assert system["message"]["uuid"] is None and system["user"] == NULL_USER and NULL_USER["id"] is None


# -- imbot.v2.Bot.get and scope --------------------------------------------------------------------------------
def test_bot_get_for_the_owner_and_for_others(portal: StandIn) -> None:
    by_id = ok(call(portal, "imbot.v2.Bot.get"))
    assert set(by_id["bot"]) == BOT_OWNER and by_id["users"] == [USERS[BOT_ID]]
    bot = by_id["bot"]
    assert (bot["id"], bot["code"], bot["type"], bot["eventMode"]) == (BOT_ID, BOT_CODE, "personal", "fetch")
    assert (bot["countChat"], bot["countUser"], bot["countMessage"]) == (3, 10, 3)  # from the portal's own data
    assert ok(call(portal, "imbot.v2.Bot.get", botId=None, code=BOT_CODE)) == {**by_id, "bot": bot}
    brief = ok(call(portal, "imbot.v2.Bot.get", botToken="another-apps-token"))["bot"]
    assert set(brief) == BOT_BRIEF
    oauth = StandIn(bot_token=TOKEN, oauth=APP, bot_type="bot")
    over_oauth = ok(oauth.answer("POST", "/rest/imbot.v2.Bot.get", {"auth": "access0"}, {"code": BOT_CODE}))
    assert set(over_oauth["bot"]) == BOT_OWNER and over_oauth["bot"]["type"] == "bot"


def test_bot_get_errors(portal: StandIn) -> None:
    refused(call(portal, "imbot.v2.Bot.get", botId=None), 400, "PARAMS_REQUIRED")
    refused(call(portal, "imbot.v2.Bot.get", botId=457), 400, "BOT_NOT_FOUND")
    refused(call(portal, "imbot.v2.Bot.get", botId=None, code="other_bot"), 400, "BOT_NOT_FOUND")
    refused(call(portal, "imbot.v2.Bot.get", botToken=None), 400, "BOT_TOKEN_NOT_SPECIFIED")


def test_scope(portal: StandIn) -> None:
    scopes = ok(portal.answer("POST", HOOK + "scope", {}, {}))
    assert "imbot" in scopes and set(scopes) < set(ALL_SCOPES)
    assert ok(portal.answer("POST", HOOK + "scope", {}, {"full": True})) == list(ALL_SCOPES)
    assert ok(portal.answer("GET", HOOK + "scope", {"full": "Y"}, {})) == list(ALL_SCOPES)


def test_without_the_imbot_scope_imbot_methods_are_refused() -> None:
    portal = StandIn(webhook_code=CODE, bot_token=TOKEN, scopes=["im", "user"])
    assert ok(portal.answer("POST", HOOK + "scope", {}, {})) == ["im", "user"]
    for method in ("imbot.v2.Chat.get", "imbot.v2.Chat.User.list", "imbot.v2.Chat.Message.get", "imbot.v2.Bot.get"):
        refused(call(portal, method, dialogId="chat5", messageId=789), 403, "insufficient_scope")


def test_unknown_bot_type_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="bot_type"):
        StandIn(bot_token=TOKEN, bot_type="assistant")


# -- /oauth/token/ ---------------------------------------------------------------------------------------------
def refresh(portal: StandIn, refresh_token: str, **over: str) -> tuple[int, dict[str, Any]]:
    params = {"grant_type": "refresh_token", "client_id": APP.client_id, "client_secret": APP.client_secret}
    return portal.token({**params, "refresh_token": refresh_token, **over})


def test_refresh_rotates_the_pair() -> None:
    portal = StandIn(bot_token=TOKEN, oauth=APP, portal_url="https://acme.bitrix24.com/")
    status, pair = refresh(portal, "refresh0")
    assert status == 200 and pair["refresh_token"] != "refresh0" and pair["expires_in"] == APP.access_ttl
    assert pair["client_endpoint"] == "https://acme.bitrix24.com/rest/" and pair["domain"] == "acme.bitrix24.com"
    assert "imbot" in pair["scope"].split(",")
    assert portal.access_tokens == {pair["access_token"]} and portal.refresh_count == 1
    refused(refresh(portal, "refresh0"), 400, "invalid_grant")  # a used refresh token is dead
    assert portal.invalid_grants == 1
    body = {"botId": BOT_ID, "dialogId": "chat5"}
    refused(portal.answer("POST", "/rest/imbot.v2.Chat.get", {"auth": "access0"}, body), 401, "expired_token")
    ok(portal.answer("POST", "/rest/imbot.v2.Chat.get", {"auth": pair["access_token"]}, body))
    assert refresh(portal, pair["refresh_token"])[0] == 200


def test_refresh_errors() -> None:
    portal = StandIn(bot_token=TOKEN, oauth=APP)
    refused(refresh(portal, "refresh0", client_secret="wrong"), 401, "invalid_client")
    refused(refresh(portal, "refresh0", grant_type="authorization_code"), 400, "invalid_request")
    refused(StandIn(bot_token=TOKEN).token({"grant_type": "refresh_token"}), 400, "invalid_request")
    assert portal.refresh_count == 0 and portal.invalid_grants == 0


def test_concurrent_refreshes_with_one_token_succeed_once() -> None:
    portal = StandIn(bot_token=TOKEN, oauth=APP)
    statuses: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        statuses.append(refresh(portal, "refresh0")[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(statuses) == [200] + [400] * 7
    assert portal.refresh_count == 1 and portal.invalid_grants == 7


# -- the demo's face -------------------------------------------------------------------------------------------
def test_demo_serves_members_and_messages() -> None:
    def post(method: str, **params: Any) -> tuple[int, Any]:
        body = {"botId": config.DEMO_BOT_ID, "botToken": config.DEMO_BOT_TOKEN, **params}
        request = httpx.Request("POST", config.DEMO_WEBHOOK_URL + method, json=body)
        response = demo.handle(request)
        return response.status_code, json.loads(response.content)

    status, members = post("imbot.v2.Chat.User.list", dialogId="chat5")
    assert status == 200 and [u["id"] for u in members["result"]] == MEMBERS["chat5"]
    status, window = post("imbot.v2.Chat.Message.getContext", messageId=789, range=3)
    assert status == 200 and [m["id"] for m in window["result"]["messages"]] == chat_ids("chat5")[-4:]
    assert post("imbot.v2.Chat.Message.get", messageId=640) == (
        403,
        {"error": "MESSAGE_ACCESS_DENIED", "error_description": "Message access denied"},
    )
    assert demo.CHATS is CHATS
