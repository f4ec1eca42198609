"""The pure rules behind "hostile upstreams are normal": the redactor, text cleaning, the retry table, pacing
fairness and argument checks. No network, no event loop: each rule is a table, checked row by row.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import pytest

from b24_mcp.bitrix24.pacing import LeakyBucket
from b24_mcp.errors import (
    AnswerError,
    B24Error,
    ConfigError,
    InputError,
    PortalError,
    Rule,
    UpstreamError,
    classify,
    clean_code,
    clean_text,
    portal_error,
)
from b24_mcp.forms import MAX_ID
from b24_mcp.logs import ROTATED_KEPT, Redactor
from b24_mcp.tools import arguments
from b24_mcp.tools.arguments import BOT, DIALOG_ID, MESSAGE_ID, RANGE, parse

# --- the redactor ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "text", "shown"),
    [
        ("abc", "abcdef", "abcdef"),  # inside an ordinary word: left alone
        ("abc", "xabc", "xabc"),
        ("abc", "abc_1", "***_1"),  # `_` ends the value too (a secret in a snake_case name)
        ("abc", "x_abc_", "x_***_"),
        ("abc", "token abc.", "token ***."),  # a full stop ends the value
        ("abc", "token abc", "token ***"),
        ("abc", "(abc), abc; abc!", "(***), ***; ***!"),
        ("abc", "key=abc&x=1", "key=***&x=1"),
        ("x", "x, y and x.", "***, y and ***."),  # any length, even one character
        ("s3cr3t-Token_9", "Bearer s3cr3t-Token_9.", "Bearer ***."),
        ("a.b/c=", "see a.b/c= here", "see *** here"),  # a secret's own punctuation is part of it
        ("tok", "ток tok токен", "ток *** токен"),
    ],
)
def test_a_secret_of_any_length_is_masked_as_a_whole_value(secret: str, text: str, shown: str) -> None:
    redact = Redactor()
    redact.add([secret])
    assert redact(text) == shown


def test_a_calls_own_secret_is_masked_in_that_call_only() -> None:
    redact = Redactor()
    redact.add(["fixed"])
    assert redact("fixed mine.", ["mine"]) == "*** ***."
    assert redact("fixed mine.") == "*** mine."  # not remembered afterwards


def test_a_redis_password_is_masked_as_the_url_spells_it_too() -> None:
    """`redis://:p%40ss@...`: the URL, quoted in an error, carries the %-encoded password, not the decoded one."""
    from b24_mcp import settings as config

    url = "redis://:p%40ssW0rd%2Fx@127.0.0.1:6379/0"
    settings = config.load({"B24_WEBHOOK_URL": "https://acme.bitrix24.com/rest/1/abc123secret/", "B24_REDIS_URL": url})
    redact = Redactor()
    redact.add(settings.secrets)
    shown = redact(f"could not connect to {url} (password p@ssW0rd/x)")
    assert "p%40ssW0rd%2Fx" not in shown and "p@ssW0rd/x" not in shown


def test_only_the_newest_rotated_tokens_are_kept() -> None:
    redact = Redactor()
    tokens = [f"tok{n}" for n in range(ROTATED_KEPT + 1)]
    for token in tokens:
        redact.add_rotating([token])
    assert redact(" ".join(tokens)) == " ".join(["tok0"] + ["***"] * ROTATED_KEPT)


# --- cleaning what a portal says ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[31mred\x1b[0m alert", "red alert"),
        ("\x1b[38;2;255;0;0mrgb\x1b[0m", "rgb"),
        ("\x9b31mred", "red"),  # 8-bit CSI
        ("ok\x1b]0;window title\x07 done", "ok done"),  # OSC with its payload
        ("ok\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\", "oklink"),  # OSC 8 hyperlink
        ("ok\x1bPtmux;payload\x1b\\ done", "ok done"),  # DCS string
        ("ok \x1b]0;never ends", "ok"),
        ("bell\x07 back\x08space nul\x00 del\x7f", "bell backspace nul del"),
        ("zero\u200bwidth \ufeffbom \u00adsoft", "zerowidth bom soft"),
        ("bidi \u202eevil\u202c \u2066iso\u2069", "bidi evil iso"),
        ("tags\U000e0049\U000e0047\U000e004e", "tags"),  # Unicode tag characters smuggle invisible text
        ("lines\r\nand\ttabs\u2028too", "lines and tabs too"),
        ("Привет, мир ✓", "Привет, мир ✓"),
    ],
)
def test_clean_text_leaves_one_printable_line(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_drops_every_control_and_format_character() -> None:
    hidden = "".join(
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if unicodedata.category(c) == "Cf" or (unicodedata.category(c) == "Cc" and not c.isspace())
    )
    introducers = "\x1b\x90\x98\x9b\x9d\x9e\x9f"  # ESC and 8-bit CSI/OSC/DCS/...: they swallow what follows
    assert clean_text("a" + "".join(c for c in hidden if c not in introducers) + "b", limit=10**6) == "ab"
    for c in introducers:
        assert clean_text(f"a {c}x", limit=10**6) == "a"


def test_clean_text_is_bounded_and_never_shows_half_a_secret() -> None:
    assert clean_text("word " * 2000) == ("word " * 60)[:299] + "…"
    assert clean_text("x" * 10**6) == "x" * 299 + "…"
    # With a mask, a word cut at the work window (4 x limit) is dropped: it may be the start of a secret.
    said = clean_text("\x1b[0m" * 296 + "hostileHookCode77 and more", limit=10, mask=str)
    assert said == "…"
    assert clean_text("x" * 10**6, mask=str) == "…"


def test_clean_text_masks_after_cleaning() -> None:
    def mask(text: str) -> str:
        return text.replace("token42", "***")

    assert clean_text("bad to\x1b[0mken\u200b42!", mask=mask) == "bad ***!"


@pytest.mark.parametrize(
    ("code", "kept"),
    [
        ("ACCESS_DENIED", True),
        ("expired_token", True),
        ("ERROR_CORE.5", True),
        ("X" * 64, True),
        ("X" * 65, False),
        ("ACCESS DENIED", False),
        ("\x1b[31mACCESS_DENIED", False),
        ("ACCESS_DENIED\u200b", False),
        ("", False),
        (42, False),
        (None, False),
        (["ACCESS_DENIED"], False),
    ],
)
def test_clean_code_keeps_only_code_like_codes(code: object, kept: bool) -> None:
    assert clean_code(code) == (code if kept else None)


def test_a_portal_description_hiding_a_secret_is_masked() -> None:
    err = portal_error(
        "ACCESS_DENIED",
        "token ab\x1b[0mc99 and per\u200bcall!",
        status=403,
        host="p.example",
        call={},
        secrets=["abc99", "percall"],
    )
    assert err.description == "token *** and ***!"


# --- which failures are retried -------------------------------------------------------------------------------------


def portal(code: str, status: int = 400) -> PortalError:
    return PortalError(f"Bitrix24 error {code}", code=code, status=status)


CLASSIFY: list[tuple[B24Error, bool, Rule]] = [
    (portal("QUERY_LIMIT_EXCEEDED", 503), False, "rate_limit"),
    (portal("QUERY_LIMIT_EXCEEDED", 503), True, "rate_limit"),
    (UpstreamError("bare 429", status=429), False, "rate_limit"),
    (UpstreamError("bare 503", status=503, retryable=True), False, "rate_limit"),
    (portal("OPERATION_TIME_LIMIT", 503), False, "wait_reset"),
    (portal("OVERLOAD_LIMIT", 503), False, "final"),  # a manual block: a 503 with this code is never retried
    (portal("OVERLOAD_LIMIT", 503), True, "final"),
    (portal("expired_token", 401), True, "reauth"),
    (portal("invalid_token", 401), True, "reauth"),
    (portal("NO_AUTH_FOUND", 401), True, "reauth"),
    (portal("expired_token", 401), False, "final"),  # a webhook has nothing to renew
    (portal("invalid_token", 401), False, "final"),
    (portal("NO_AUTH_FOUND", 401), False, "final"),
    (portal("ACCESS_DENIED", 403), True, "final"),
    (portal("INTERNAL_SERVER_ERROR", 500), False, "final"),
    (UpstreamError("connection reset", retryable=True), False, "transient"),
    (UpstreamError("HTML 502 page", status=502, retryable=True), True, "transient"),
    (UpstreamError("TLS certificate"), False, "final"),
    (UpstreamError("too large", status=200), False, "final"),
    (AnswerError("not the documented shape", status=503, retryable=True), False, "final"),
    (AnswerError("code not readable", status=429), False, "final"),
    (InputError("bad dialogId"), False, "final"),
    (ConfigError("bad setting"), True, "final"),
]


@pytest.mark.parametrize(("err", "oauth", "rule"), CLASSIFY, ids=[f"{e.message}-{o}" for e, o, _ in CLASSIFY])
def test_classify(err: B24Error, oauth: bool, rule: Rule) -> None:
    assert classify(err, oauth=oauth) == rule


def test_a_rejected_token_in_oauth_mode_names_the_oauth_settings_not_the_webhook() -> None:
    oauth = portal_error("NO_AUTH_FOUND", "", status=401, host="p.example", call={}, oauth=True)
    webhook = portal_error("NO_AUTH_FOUND", "", status=401, host="p.example", call={}, oauth=False)
    assert "B24_ACCESS_TOKEN" in str(oauth) and "B24_WEBHOOK_URL" not in str(oauth)
    assert "B24_WEBHOOK_URL" in str(webhook)


# --- a fair limiter -------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_impatient_callers_leaves_an_idle_bucket_idle() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=2, burst=10, clock=clock)
    waits = [bucket.reserve(max_wait=1.0) for _ in range(200)]
    taken = [w for w in waits if w is not None]
    assert taken == [0.0] * 9 + [0.5, 1.0]  # 9 at once, then the two whose turn comes within a second
    clock.now += 1.0  # the last of those has gone
    wait = bucket.reserve()
    assert wait is not None and wait <= 1 / bucket.rate  # as the portal counts: one interval at most
    clock.now += 60
    assert bucket.reserve() == 0.0 and bucket.level <= 1


def test_a_refused_reservation_takes_nothing() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=1, burst=2, clock=clock)
    assert bucket.reserve() == 0.0
    level = bucket.level
    assert bucket.reserve(max_wait=0.5) is None
    assert bucket.level == level
    assert bucket.reserve(max_wait=1.0) == 1.0


def test_a_free_slot_is_taken_even_with_no_time_left() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=1, burst=3, clock=clock)
    assert [bucket.reserve(max_wait=-0.01), bucket.reserve(max_wait=0.0)] == [0.0, 0.0]
    assert bucket.reserve(max_wait=0.5) is None  # the next slot is a second away


def test_a_released_slot_goes_to_the_next_caller() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=1, burst=2, clock=clock)
    assert [bucket.reserve(), bucket.reserve(), bucket.reserve()] == [0.0, 1.0, 2.0]
    clock.now += 0.25
    bucket.release()  # the caller of the 2 s slot was cancelled while waiting
    assert bucket.reserve() == 1.75  # the next caller takes that slot, not the one after it


def test_a_release_never_leaves_credit_behind() -> None:
    clock = Clock()
    bucket = LeakyBucket(rate=1, burst=2, clock=clock)
    assert bucket.reserve() == 0.0
    clock.now += 5
    bucket.release()
    bucket.release()  # more releases than waiting calls: the bucket is empty, not "negative"
    assert [bucket.reserve(), bucket.reserve()] == [0.0, 1.0]


# --- tool arguments -------------------------------------------------------------------------------------------------

GET_CHAT = [DIALOG_ID, *BOT]
GET_MESSAGES = [MESSAGE_ID, RANGE, *BOT]


def refused(args: list[arguments.Arg], raw: dict[str, Any]) -> str:
    with pytest.raises(InputError) as caught:
        parse(args, raw)
    message = str(caught.value)
    assert len(message) < 400, "a caller's value is echoed bounded"
    return message


def test_unknown_arguments_are_refused_by_name() -> None:
    message = refused(GET_CHAT, {"dialogId": "chat5", "dialogID": "chat5", "chatId": 5})
    assert message.startswith("unknown arguments 'chatId', 'dialogID': this tool takes only dialogId, botId, botToken")


def test_a_1_mb_unknown_argument_name_is_echoed_bounded() -> None:
    message = refused(GET_CHAT, {"dialogId": "chat5", "x" * 10**6: 1})
    assert "unknown argument 'xxxxx" in message


@pytest.mark.parametrize(
    ("args", "name", "value"),
    [
        (GET_CHAT, "botId", MAX_ID + 1),
        (GET_CHAT, "botId", str(MAX_ID + 1)),
        (GET_CHAT, "botId", True),
        (GET_MESSAGES, "messageId", MAX_ID + 1),
        (GET_MESSAGES, "messageId", str(MAX_ID + 1)),
        (GET_MESSAGES, "messageId", float(MAX_ID + 1)),
        (GET_CHAT, "dialogId", MAX_ID + 1),
        (GET_CHAT, "dialogId", str(MAX_ID + 1)),
        (GET_CHAT, "dialogId", f"chat{MAX_ID + 1}"),
        pytest.param(GET_CHAT, "dialogId", 10**5000, id="dialogId-10**5000"),  # more digits than str() allows
    ],
)
def test_ids_above_2_31_are_refused(args: list[arguments.Arg], name: str, value: object) -> None:
    base = {"dialogId": "chat5"} if args is GET_CHAT else {"messageId": 789}
    message = refused(args, {**base, name: value})
    assert message.startswith(name) and str(MAX_ID) in message


@pytest.mark.parametrize(("value", "small"), [(789, 7), (789.0, 7.0), ("789", "7"), (" 789 ", " 7 ")])
def test_every_integer_argument_reads_a_whole_number_the_same_way(value: object, small: object) -> None:
    args = [MESSAGE_ID, RANGE, *BOT]
    assert parse(args, {"messageId": value}) == {"messageId": 789}
    assert parse(args, {"messageId": 1, "botId": value}) == {"messageId": 1, "botId": 789}
    assert parse(args, {"messageId": 1, "range": small}) == {"messageId": 1, "range": 7}
    assert "789.0" in MESSAGE_ID.schema["description"]  # the rule is stated where a model reads it


@pytest.mark.parametrize("value", [789.5, True, "7e2", "0x10", [789], float("inf"), float("nan")])
def test_what_is_not_a_whole_number_is_refused_alike(value: object) -> None:
    assert refused([MESSAGE_ID, RANGE, *BOT], {"messageId": value}).startswith("messageId must be an integer")
    assert refused([MESSAGE_ID, RANGE, *BOT], {"messageId": 1, "botId": value}).startswith("botId must be")


def test_an_integer_dialog_id_is_a_personal_chat() -> None:
    assert parse(GET_CHAT, {"dialogId": 123}) == {"dialogId": "123"}
    assert parse(GET_CHAT, {"dialogId": MAX_ID, "botId": MAX_ID}) == {"dialogId": str(MAX_ID), "botId": MAX_ID}


@pytest.mark.parametrize("dialog_id", ["chat" + "9" * 10**6, "9" * 10**6, "x" * 10**6, "chat " + "1" * 10**6])
def test_a_1_mb_dialog_id_is_echoed_bounded(dialog_id: str) -> None:
    message = refused(GET_CHAT, {"dialogId": dialog_id})
    assert f"{dialog_id[:10]!r}"[:-1] in message and "…'" in message


def test_a_misspelt_chat_id_gets_the_spelling_to_pass() -> None:
    assert 'Write it as "chat5"' in refused(GET_CHAT, {"dialogId": "Chat#5"})
    assert f"ids are from 1 to {MAX_ID}" in refused(GET_CHAT, {"dialogId": "chat#99999999999"})


@pytest.mark.parametrize(
    ("link", "hint"),
    [
        ("https://p.bitrix24.com/online/?IM_DIALOG=chat5", 'pass "chat5"'),
        ("https://p.bitrix24.com/online/?IM_DIALOG=123&IM_MESSAGE=9", 'pass "123"'),
        (f"https://p.bitrix24.com/online/?IM_DIALOG=chat{MAX_ID + 1}", None),  # no hint that would be refused
    ],
)
def test_a_chat_link_is_answered_with_the_dialog_id_to_pass(link: str, hint: str | None) -> None:
    message = refused(GET_CHAT, {"dialogId": link})
    assert (hint in message) if hint else ("pass" not in message)
