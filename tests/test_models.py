"""The Chat model (the outputSchema) and the checks on get_chat's arguments."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import ValidationError

from b24_mcp.bitrix24.models import Chat
from b24_mcp.errors import InputError
from b24_mcp.standin_data import DOC_CHAT  # the example answer on imbot.v2.Chat.get's page, verbatim
from b24_mcp.tools.arguments import check_bot_id, check_bot_token, check_dialog_id

FACTS_FIELDS = (
    "id dialogId name description type messageType owner color avatar extranet containsCollaber role muteList "
    "managerList entityType entityId entityData1 entityData2 entityData3 entityLink diskFolderId permissions "
    "parentChatId parentMessageId isNew textFieldEnabled backgroundId dateCreate lastMessageId lastId unreadId "
    "markedId lastMessageViews messageCount userCounter public"
).split()

SCHEMA = Chat.model_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)  # a valid schema: test_contract checks every published one


def test_every_documented_field_is_in_the_schema() -> None:
    assert set(FACTS_FIELDS) <= set(SCHEMA["properties"])
    assert SCHEMA["required"] == ["id", "dialogId"]
    assert SCHEMA["additionalProperties"] is True


def test_documented_example_round_trips_exactly() -> None:
    dumped = Chat.model_validate(DOC_CHAT).model_dump(mode="json", exclude_unset=True)
    assert dumped == DOC_CHAT
    VALIDATOR.validate(dumped)


def test_nullable_only_where_documented_or_seen() -> None:
    props = SCHEMA["properties"]
    nullable = {name for name, p in props.items() if {"type": "null"} in p.get("anyOf", [])}
    assert nullable == {
        "color", "diskFolderId", "parentChatId", "parentMessageId", "backgroundId", "dateCreate",
        "lastMessageId", "lastId", "unreadId", "markedId",
        "dialogId",  # a private chat whose other person the portal cannot resolve
    }  # fmt: skip


def test_the_documented_and_the_sent_type_are_both_read() -> None:
    kinds = {name: {p.get("type") for p in SCHEMA["properties"][name]["anyOf"]} for name in ("textFieldEnabled",)}
    assert kinds == {"textFieldEnabled": {"boolean", "string"}}  # documented "Y"/"N", sent true/false
    for sent in ({"textFieldEnabled": True}, {"textFieldEnabled": "N"}, {"lastMessageViews": "{}"}):
        VALIDATOR.validate(Chat.model_validate({"id": 5, "dialogId": "chat5", **sent}).model_dump(exclude_unset=True))
    views = {"messageId": 789, "firstViewers": [], "countOfViewers": 0}  # sent: an object, documented: a JSON string
    assert Chat.model_validate({"id": 5, "dialogId": "chat5", "lastMessageViews": views}).lastMessageViews == views


def test_a_portal_cannot_fill_the_report_b24_mcp_writes() -> None:
    with pytest.raises(ValidationError, match="b24-mcp's own field"):
        Chat.model_validate({"id": 5, "dialogId": "chat5", "notAsDocumented": []})


def test_unknown_fields_and_php_empty_arrays_pass_through() -> None:
    sent = {"id": 9, "dialogId": "chat9", "entityLink": [], "permissions": [], "aiProvider": "x", "isTemporary": False}
    dumped = Chat.model_validate(sent).model_dump(mode="json", exclude_unset=True)
    assert dumped == sent
    VALIDATOR.validate(dumped)


@pytest.mark.parametrize(
    ("field", "value"), [("owner", "456"), ("extranet", "yes"), ("muteList", ["7"]), ("messageCount", 1.5)]
)
def test_values_of_another_type_are_refused_not_rewritten(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Chat.model_validate({"id": 5, "dialogId": "chat5", field: value})
    assert field in str(info.value)


def test_absent_fields_stay_absent() -> None:
    assert Chat.model_validate({"id": 1, "dialogId": "1"}).model_dump(exclude_unset=True) == {"id": 1, "dialogId": "1"}


@pytest.mark.parametrize("value", ["chat5", "chat1", "123", "1", "chat2147483647"])
def test_valid_dialog_ids(value: str) -> None:
    assert check_dialog_id(value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "dialogId is required"),
        ("", "dialogId is required"),
        (5.0, "got a JSON number"),
        ("chat2147483648", "at most 2147483647"),
        (["chat5"], "got a JSON array"),
        ("chat 5", "Remove the spaces"),
        (" chat5", "Remove the spaces"),
        ("Chat5", 'Write it as "chat5"'),
        ("chat#5", 'Write it as "chat5"'),
        ("chat0", "is not valid"),
        ("chat05", "is not valid"),
        ("sg5", "is not valid"),
        ("chat5; DROP", "is not valid"),
        ("chat" + "9" * 40, "is not valid"),
        ("-1", "is not valid"),
        ("chat5\n", "Remove the line breaks"),
        ("chat\t5", "Remove the line breaks and tabs"),
        ("chat-5", 'Write it as "chat5"'),
        ("chat_5", 'Write it as "chat5"'),
    ],
)
def test_invalid_dialog_ids_say_the_accepted_form(value: object, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        check_dialog_id(value)
    message = str(info.value)
    assert fragment in message
    assert '"chat5"' in message and '"123"' in message  # the accepted forms, with examples


def test_long_dialog_id_is_shortened_in_the_message() -> None:
    with pytest.raises(InputError) as info:
        check_dialog_id("x" * 10_000)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("value", [456, "456", 1, 2**31 - 1])
def test_valid_bot_ids(value: object) -> None:
    assert check_bot_id(value) == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize("value", [0, -1, 2**31, True, 4.5, "abc", "", [456], {"id": 1}])
def test_invalid_bot_ids(value: object) -> None:
    with pytest.raises(InputError, match="botId must be a positive integer"):
        check_bot_id(value)


@pytest.mark.parametrize("value", [12345, "", "with space", "x" * 41, "tab\there"])
def test_invalid_bot_tokens_are_named_not_echoed(value: object) -> None:
    with pytest.raises(InputError) as info:
        check_bot_token(value)
    message = str(info.value)
    assert message.startswith("botToken")
    if isinstance(value, str) and value:
        assert value not in message
