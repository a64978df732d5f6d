"""FeishuSender against the fake Feishu webhook server (tests/fakes/feishu_api.py): each kind of answer
becomes the PushResult a broadcast needs, signed requests pass the platform's check, and nothing but the
configured API root is ever called."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from channels.base import ChannelDown, PushStatus
from channels.document import build_document, summary_parser
from channels.feishu import FEISHU_BODY_BUDGET, FEISHU_MAX_BODY_BYTES, body_bytes, render_feishu
from channels.feishu.transport import RATE_LIMITED_RETRY_SECONDS, FeishuSender
from channels.links import LinkPolicy, LinkRewriter
from content.model import Issue, Item, Section
from content.parser import parse_issue
from content.source import read_issue_file
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.feishu_api import (
    OTHER_TOKEN,
    RETRY_AFTER_SECONDS,
    SECRET,
    TOKEN,
    FakeFeishu,
    RateLimit,
)
from tests.fakes.robot_api import unanswered_port

HOOK = "/open-apis/bot/v2/hook/"


def body(text: str = "简报") -> dict[str, Any]:
    return {
        "msg_type": "post",
        "content": {
            "post": {"zh_cn": {"title": "嵌入式AI简报", "content": [[{"tag": "text", "text": text}]]}}
        },
    }


@pytest.fixture
async def sender(fake_feishu: FakeFeishu) -> AsyncIterator[FeishuSender]:
    sender = FeishuSender(fake_feishu.url)
    try:
        yield sender
    finally:
        await sender.close()


def assert_clean(error: str | None) -> None:
    """One line, and neither the token nor the secret in it."""
    assert error
    assert "\n" not in error
    assert TOKEN not in error
    assert SECRET not in error


# --- sent --------------------------------------------------------------------------------------------


async def test_an_unsigned_push_is_sent(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN)
    result = await sender.push(TOKEN, body())
    assert result.status == PushStatus.SENT
    assert fake_feishu.messages(TOKEN) == [body()]
    assert fake_feishu.accepted[TOKEN] == [body()]  # no timestamp, no sign
    assert fake_feishu.paths == [HOOK + TOKEN]


async def test_a_signed_push_carries_a_valid_signature(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    before = int(time.time())
    result = await sender.push(TOKEN, body(), SECRET)
    assert result.status == PushStatus.SENT
    (sent,) = fake_feishu.accepted[TOKEN]
    assert set(sent) == {"timestamp", "sign", "msg_type", "content"}
    assert isinstance(sent["timestamp"], str)
    assert before <= int(sent["timestamp"]) <= int(time.time())
    assert fake_feishu.messages(TOKEN) == [body()]


async def test_the_whole_issue_is_delivered_in_order(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    issue = parse_issue(read_issue_file(corpus_dir() / "2020-07-02.md"))
    policy = LinkPolicy("feishu", public_url="https://jianbao.example")
    payload = render_feishu(build_document(issue, LinkRewriter(policy, issue.date), summary_parser()))
    assert len(payload.messages) == 2
    for message in payload.messages:
        assert (await sender.push(TOKEN, message, SECRET)).status == PushStatus.SENT
    assert fake_feishu.messages(TOKEN) == list(payload.messages)
    assert max(fake_feishu.body_sizes) <= FEISHU_MAX_BODY_BYTES


def exact_budget_issue() -> dict[str, Any]:
    """A rendered body of exactly FEISHU_BODY_BUDGET bytes: 20,000 once signed."""

    def render(length: int) -> dict[str, Any]:
        # Two items: one block alone is kept a little under the budget (it must also fit under a
        # continuation title), two blocks together can fill it to the byte.
        items = (
            Item(1, "条目", url="https://example.com/1", summary="摘要"),
            Item(2, "条目", url="https://example.com/2", summary="x" * length),
        )
        issue = Issue(date=dt.date(2024, 2, 1), title="边界", sections=(Section("栏目", 1, items),))
        document = build_document(issue, LinkRewriter(LinkPolicy("feishu"), issue.date), summary_parser())
        (message,) = render_feishu(document).messages
        return message

    length = FEISHU_BODY_BUDGET - body_bytes(render(1)) + 1
    message = render(length)
    assert body_bytes(message) == FEISHU_BODY_BUDGET
    return message


async def test_a_signed_body_of_exactly_20000_bytes_is_accepted(
    fake_feishu: FakeFeishu, sender: FeishuSender
) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    result = await sender.push(TOKEN, exact_budget_issue(), SECRET)
    assert result.status == PushStatus.SENT
    assert fake_feishu.body_sizes == [FEISHU_MAX_BODY_BYTES]


async def test_one_byte_more_is_refused_by_the_platform_and_not_sent_by_the_sender(
    fake_feishu: FakeFeishu, sender: FeishuSender
) -> None:
    fake_feishu.add_robot(TOKEN)
    message = exact_budget_issue()
    message["content"]["post"]["zh_cn"]["content"][-1][0]["text"] += "x" * 80  # 79 bytes of signature + 1
    raw = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(raw) == FEISHU_MAX_BODY_BYTES + 1
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake_feishu.url + HOOK + TOKEN, data=raw) as response,
    ):
        answer = await response.json()
    assert answer == {"code": 9499, "msg": "Bad Request", "data": {}}
    result = await sender.push(TOKEN, message)
    assert result.status == PushStatus.FAILED
    assert "over 20000" in (result.error or "")
    assert fake_feishu.body_sizes == [FEISHU_MAX_BODY_BYTES + 1]  # only the direct request arrived


# --- refused by the bot's settings ---------------------------------------------------------------------


async def test_a_wrong_secret_fails(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    result = await sender.push(TOKEN, body(), "another-secret-value")
    assert result.status == PushStatus.FAILED
    assert (result.error or "").startswith("19021 ")
    assert_clean(result.error)
    assert "another-secret-value" not in (result.error or "")
    assert fake_feishu.error_codes() == [19021]
    assert fake_feishu.accepted == {}


async def test_no_secret_for_a_signing_bot_fails(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    result = await sender.push(TOKEN, body())
    assert result.status == PushStatus.FAILED
    assert fake_feishu.error_codes() == [19021]


@pytest.mark.parametrize(("skew", "status"), [(-3500, PushStatus.SENT), (3500, PushStatus.SENT)])
async def test_a_timestamp_within_the_hour_passes(
    fake_feishu: FakeFeishu, skew: float, status: PushStatus
) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    sender = FeishuSender(fake_feishu.url, clock=lambda: time.time() + skew)
    try:
        assert (await sender.push(TOKEN, body(), SECRET)).status == status
    finally:
        await sender.close()


@pytest.mark.parametrize("skew", [-3700, 3700])
async def test_a_clock_off_by_more_than_an_hour_fails(fake_feishu: FakeFeishu, skew: float) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    sender = FeishuSender(fake_feishu.url, clock=lambda: time.time() + skew)
    try:
        result = await sender.push(TOKEN, body(), SECRET)
    finally:
        await sender.close()
    assert result.status == PushStatus.FAILED  # FAILED, not BLOCKED: our clock, not the bot
    assert fake_feishu.error_codes() == [19021]


async def test_missing_keywords_fail(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN, keywords=("告警", "更新"))
    assert (await sender.push(TOKEN, body("项目更新：简报来了"))).status == PushStatus.SENT
    result = await sender.push(TOKEN, body("今日新闻"))
    assert result.status == PushStatus.FAILED
    assert (result.error or "").startswith("19024 ")
    # The guide: keywords are looked for in text values, not in href.
    linked = body("今日新闻")
    linked["content"]["post"]["zh_cn"]["content"][0].append(
        {"tag": "a", "text": "链接", "href": "https://example.com/告警"}
    )
    assert (await sender.push(TOKEN, linked)).status == PushStatus.FAILED


# --- the bot is gone ---------------------------------------------------------------------------------


async def test_an_unknown_or_removed_bot_is_blocked(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    result = await sender.push(TOKEN, body())
    assert result.status == PushStatus.BLOCKED
    assert (result.error or "").startswith("19001 ")
    assert_clean(result.error)
    fake_feishu.add_robot(OTHER_TOKEN)
    assert (await sender.push(OTHER_TOKEN, body())).status == PushStatus.SENT
    fake_feishu.remove_robot(OTHER_TOKEN)
    assert (await sender.push(OTHER_TOKEN, body())).status == PushStatus.BLOCKED


async def test_a_bot_turned_off_is_blocked(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN, enabled=False)
    result = await sender.push(TOKEN, body())
    assert result.status == PushStatus.BLOCKED
    assert (result.error or "").startswith("19007 ")


# --- refused content ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"msg_type": "post", "content": {"post": {"zh_cn": {"content": [[{"tag": "b", "text": "x"}]]}}}},
        {"msg_type": "post", "content": {"post": {"zh_cn": {"content": [[{"tag": "a", "text": "x"}]]}}}},
        {
            "msg_type": "post",
            "content": {
                "post": {"zh_cn": {"content": [[{"tag": "a", "text": "x", "href": "javascript:alert(1)"}]]}}
            },
        },
        {"msg_type": "markdown", "content": {"text": "x"}},
        {"msg_type": "interactive", "content": {"text": "x"}},
    ],
)
async def test_a_malformed_body_fails(
    fake_feishu: FakeFeishu, sender: FeishuSender, bad: dict[str, Any]
) -> None:
    fake_feishu.add_robot(TOKEN)
    result = await sender.push(TOKEN, bad)
    assert result.status == PushStatus.FAILED
    assert (result.error or "").startswith("9499 Bad Request")


async def test_a_card_is_accepted(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN)
    card = {"msg_type": "interactive", "card": {"elements": [{"tag": "markdown", "content": "简报"}]}}
    assert (await sender.push(TOKEN, card)).status == PushStatus.SENT


async def test_a_body_with_its_own_signature_fields_is_a_programming_error(sender: FeishuSender) -> None:
    with pytest.raises(ValueError, match="timestamp or sign"):
        await sender.push(TOKEN, {**body(), "timestamp": "1"}, SECRET)


# --- rate limits and faults ----------------------------------------------------------------------------


async def test_over_five_a_second_is_retried_later(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN)
    fake_feishu.add_robot(OTHER_TOKEN)
    fake_feishu.limit_rate(RateLimit(per_second=5, per_minute=100, second=3600.0, minute=3600.0))
    results = [await sender.push(TOKEN, body(f"第{n}条")) for n in range(6)]
    assert [result.status for result in results] == [PushStatus.SENT] * 5 + [PushStatus.RETRY]
    assert results[-1].retry_after == RATE_LIMITED_RETRY_SECONDS
    assert (results[-1].error or "").startswith("9499 too many request")
    assert (await sender.push(OTHER_TOKEN, body())).status == PushStatus.SENT  # limits are per bot
    assert fake_feishu.throttled == 1


async def test_over_a_hundred_a_minute_is_retried_later(
    fake_feishu: FakeFeishu, sender: FeishuSender
) -> None:
    fake_feishu.add_robot(TOKEN)
    fake_feishu.limit_rate(RateLimit(per_second=1000, per_minute=100, second=1.0, minute=3600.0))
    statuses = [(await sender.push(TOKEN, body(f"第{n}条"))).status for n in range(101)]
    assert statuses == [PushStatus.SENT] * 100 + [PushStatus.RETRY]


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        ("500", None),
        ("drop", None),
        ("429", float(RETRY_AFTER_SECONDS)),
        ("11232", RATE_LIMITED_RETRY_SECONDS),
    ],
)
async def test_transient_faults_are_retried_and_nothing_was_delivered(
    fake_feishu: FakeFeishu, sender: FeishuSender, fault: str, retry_after: float | None
) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    fake_feishu.faults(FaultPlan(rates={fault: 1.0}))
    result = await sender.push(TOKEN, body(), SECRET)
    assert result.status == PushStatus.RETRY
    assert result.retry_after == retry_after
    assert_clean(result.error)
    assert fake_feishu.injected == [(fault, TOKEN)]
    assert fake_feishu.accepted == {}
    fake_feishu.faults(None)
    assert (await sender.push(TOKEN, body(), SECRET)).status == PushStatus.SENT
    assert fake_feishu.delivered() == {(TOKEN, json.dumps(body(), sort_keys=True, ensure_ascii=False)): 1}


async def test_no_answer_in_time_is_uncertain_and_was_delivered(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN)
    fake_feishu.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=2.0))
    sender = FeishuSender(fake_feishu.url, timeout=0.2)
    try:
        result = await sender.push(TOKEN, body())
    finally:
        await sender.close()
    assert result.status == PushStatus.UNCERTAIN
    assert fake_feishu.messages(TOKEN) == [body()]  # it was: a resend would have made it twice


async def test_a_connect_timeout_is_retried() -> None:
    with unanswered_port() as port:
        sender = FeishuSender(f"http://127.0.0.1:{port}", connect_timeout=0.2)
        try:
            result = await sender.push(TOKEN, body())
        finally:
            await sender.close()
    assert result.status == PushStatus.RETRY
    assert result.error == "connect timeout: not sent"


async def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    sender = FeishuSender(closed)
    try:
        result = await sender.push(TOKEN, body())
    finally:
        await sender.close()
    assert result.status == PushStatus.RETRY
    assert_clean(result.error)


# --- only the configured root -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",  # a URL is reduced on input, not here
        "../../../evil",
        f"{TOKEN}?x=1",
        f"{TOKEN}/../../x",
        "",
    ],
)
async def test_a_bad_token_is_never_requested(
    fake_feishu: FakeFeishu, sender: FeishuSender, address: str
) -> None:
    result = await sender.push(address, body())
    assert result.status == PushStatus.FAILED
    assert fake_feishu.paths == []


async def test_a_bad_secret_is_never_sent(fake_feishu: FakeFeishu, sender: FeishuSender) -> None:
    fake_feishu.add_robot(TOKEN)
    result = await sender.push(TOKEN, body(), "has spaces in it")
    assert result.status == PushStatus.FAILED
    assert fake_feishu.paths == []


async def test_a_wrong_api_root_is_channel_down(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN)
    sender = FeishuSender(fake_feishu.url + "/not-feishu")
    try:
        with pytest.raises(ChannelDown, match="HTTP 404"):
            await sender.push(TOKEN, body())
    finally:
        await sender.close()


async def test_redirects_are_not_followed(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(fake_feishu.url + HOOK + TOKEN)

    app = web.Application()
    app.router.add_post(HOOK + "{token}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sender = FeishuSender(f"http://{host}:{port}")
    try:
        with pytest.raises(ChannelDown, match="HTTP 302"):
            await sender.push(TOKEN, body())
    finally:
        await sender.close()
        await runner.cleanup()
    assert fake_feishu.paths == []  # the redirect's target was never called


@pytest.mark.parametrize(
    "root",
    [
        "ftp://open.feishu.cn",
        "https://user:pw@open.feishu.cn",
        "https://open.feishu.cn/?x=1",
        "open.feishu.cn",
        "",
    ],
)
def test_the_api_root_must_be_a_plain_http_url(root: str) -> None:
    with pytest.raises(ValueError, match="API root"):
        FeishuSender(root)


async def test_a_token_echoed_by_the_platform_is_scrubbed(fake_feishu: FakeFeishu) -> None:
    """Public clients have seen 19001 repeat the token in its msg; the error must not."""

    async def echo(request: web.Request) -> web.Response:
        message = f"param invalid: incoming webhook access token invalid {TOKEN}"
        return web.json_response({"code": 19001, "msg": message, "data": {}})

    async def unknown(request: web.Request) -> web.Response:
        return web.json_response({"code": 12345, "msg": f"odd {request.match_info['token']}", "data": {}})

    app = web.Application()
    app.router.add_post(HOOK + TOKEN, echo)
    app.router.add_post(HOOK + "{token}", unknown)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sender = FeishuSender(f"http://{host}:{port}")
    try:
        blocked = await sender.push(TOKEN, body())
        odd = await sender.push(OTHER_TOKEN, body())
    finally:
        await sender.close()
        await runner.cleanup()
    assert blocked.status == PushStatus.BLOCKED
    assert_clean(blocked.error)
    assert odd.status == PushStatus.RETRY  # a code the guide does not list
    assert OTHER_TOKEN not in (odd.error or "")
    assert "12345" in (odd.error or "")


# The guide's own request examples ("支持发送的消息类型说明" and "常见问题"): the fake takes every one of them.
GUIDE_EXAMPLES = {
    "text": {"msg_type": "text", "content": {"text": "新更新提醒"}},
    "text with at": {"msg_type": "text", "content": {"text": '<at user_id="ou_xxx">Tom</at> 新更新提醒'}},
    "post": {
        "msg_type": "post",
        "content": {
            "post": {
                "zh_cn": {
                    "title": "项目更新通知",
                    "content": [
                        [
                            {"tag": "text", "text": "项目有更新: "},
                            {"tag": "a", "text": "请查看", "href": "http://www.example.com/"},
                            {"tag": "at", "user_id": "ou_18eac8********17ad4f02e8bbbb"},
                        ]
                    ],
                }
            }
        },
    },
    "post with img and at all": {
        "msg_type": "post",
        "content": {
            "post": {
                "en_us": {
                    "content": [
                        [{"tag": "text", "text": "第二行:", "un_escape": False}],
                        [{"tag": "at", "user_id": "all", "user_name": "所有人"}],
                        [{"tag": "img", "image_key": "d640eeea-4d2f-4cb3-88d8-c96fa5****"}],
                    ]
                }
            }
        },
    },
    "share_chat": {"msg_type": "share_chat", "content": {"share_chat_id": "oc_f5b1a7eb27ae2****339ff"}},
    "image": {"msg_type": "image", "content": {"image_key": "img_ecffc3b9-8f14-400f-a014-05eca1a4310g"}},
    "card": {
        "msg_type": "interactive",
        "card": {
            "elements": [{"tag": "div", "text": {"content": "at所有人<at id=all></at>", "tag": "lark_md"}}]
        },
    },
}


@pytest.mark.parametrize("example", list(GUIDE_EXAMPLES.values()), ids=list(GUIDE_EXAMPLES))
async def test_the_fake_takes_the_guides_examples(
    fake_feishu: FakeFeishu, sender: FeishuSender, example: dict[str, Any]
) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    assert (await sender.push(TOKEN, example, SECRET)).status == PushStatus.SENT
    assert fake_feishu.messages(TOKEN) == [example]
