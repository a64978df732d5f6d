"""WeComSender against the fake WeCom server (tests/fakes/wecom_api.py): each answer as a broadcast reads it,
and nothing but the configured API root is ever called."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from channels.base import ChannelDown, PushResult, PushStatus
from channels.document import build_document, summary_parser
from channels.links import LinkPolicy, LinkRewriter
from channels.wecom import markdown_body, parse_address, render_wecom
from channels.wecom.transport import RATE_LIMITED_RETRY_SECONDS, WeComSender
from content.parser import parse_issue
from content.source import read_issue_file
from tests.channels.wecom.wecom_markdown import check_body
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.robot_api import unanswered_port
from tests.fakes.wecom_api import KEY, OTHER_KEY, FakeWeCom, running_fake_wecom

UNKNOWN_KEY = "11111111-2222-4333-8444-555555555555"


@asynccontextmanager
async def sender_for(fake: FakeWeCom, **options: Any) -> AsyncIterator[WeComSender]:
    sender = WeComSender(fake.url, **options)
    try:
        yield sender
    finally:
        await sender.close()


def hook_only(fake: FakeWeCom) -> None:
    """No request went anywhere but the send path, with one key in its query."""
    assert fake.paths
    for path in fake.paths:
        assert path.startswith("/cgi-bin/webhook/send?key="), path
        assert path.count("=") == 1, path


def no_key_in(result: PushResult, *keys: str) -> None:
    for key in keys:
        assert key not in (result.error or "")


def issue_messages() -> tuple[dict[str, Any], ...]:
    issue = parse_issue(read_issue_file(corpus_dir() / "2020-07-02.md"))
    policy = LinkPolicy("wecom", public_url="https://jianbao.example", tracking=False)
    document = build_document(issue, LinkRewriter(policy, issue.date), summary_parser())
    return render_wecom(document).messages


async def test_an_issue_is_delivered_as_rendered(fake_wecom: FakeWeCom) -> None:
    messages = issue_messages()
    async with sender_for(fake_wecom) as sender:
        results = [await sender.push(KEY, message) for message in messages]
    assert [result.status for result in results] == [PushStatus.SENT] * len(messages)
    assert fake_wecom.accepted[KEY] == list(messages)
    assert fake_wecom.errors == []
    for body in fake_wecom.accepted[KEY]:
        check_body(body)
    hook_only(fake_wecom)


async def test_the_address_a_subscriber_gave_is_reduced_to_the_key(fake_wecom: FakeWeCom) -> None:
    key = parse_address(f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}")
    async with sender_for(fake_wecom) as sender:
        result = await sender.push(key, markdown_body("**你好**"))
    assert result.status == PushStatus.SENT
    assert fake_wecom.contents(KEY) == ["**你好**"]


async def test_cjk_is_sent_as_utf8_not_escaped(fake_wecom: FakeWeCom) -> None:
    """Exactly 4096 bytes of content is accepted; the body carries the characters themselves."""
    content = "简" * 1365 + "a"  # 4095 + 1 bytes
    async with sender_for(fake_wecom) as sender:
        result = await sender.push(KEY, markdown_body(content))
    assert result.status == PushStatus.SENT
    assert fake_wecom.contents(KEY) == [content]


@pytest.mark.parametrize(
    ("arrange", "key", "code"),
    [
        (lambda fake: None, UNKNOWN_KEY, 93000),
        (lambda fake: fake.remove_robot(KEY), KEY, 93000),
        (lambda fake: fake.disable_robot(KEY), KEY, 93004),
    ],
    ids=["unknown key", "robot removed from its group", "robot disabled"],
)
async def test_a_robot_that_cannot_post_any_more_is_blocked(
    fake_wecom: FakeWeCom, arrange: Any, key: str, code: int
) -> None:
    arrange(fake_wecom)
    async with sender_for(fake_wecom) as sender:
        result = await sender.push(key, markdown_body("hello"))
    assert result.status == PushStatus.BLOCKED
    assert result.error is not None
    assert result.error.startswith(str(code))
    assert fake_wecom.error_codes() == [code]
    no_key_in(result, key)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"msgtype": "markdown_v2", "markdown_v2": {"content": "长" * 1366}}, 40058),
        ({"msgtype": "markdown_v2", "markdown_v2": {"content": "  "}}, 44004),
        ({"msgtype": "markdown_v2"}, 40058),
        ({"msgtype": "bogus", "bogus": {"content": "x"}}, 40008),
    ],
    ids=["over 4096 bytes", "empty content", "no content object", "unknown msgtype"],
)
async def test_content_the_robot_refuses_fails_for_good(
    fake_wecom: FakeWeCom, body: dict[str, Any], code: int
) -> None:
    """Bodies the sender does not check itself reach the robot, whose refusal is final."""
    async with sender_for(fake_wecom) as sender:
        result = await sender.push(KEY, body)
    assert result.status == PushStatus.FAILED
    assert result.error is not None
    assert result.error.startswith(str(code))
    assert fake_wecom.error_codes() == [code]
    assert KEY not in fake_wecom.accepted


@pytest.mark.parametrize(
    "body",
    [
        markdown_body("长" * 1366),  # 4098 bytes
        markdown_body(""),
        markdown_body(" \n "),
        {"msgtype": "text", "text": {"content": "长" * 683}},  # 2049 bytes
        {"msgtype": "markdown", "text": {"content": "x"}},
    ],
    ids=["markdown over 4096 bytes", "empty", "blank", "text over 2048 bytes", "no markdown object"],
)
async def test_content_that_cannot_pass_is_not_sent(fake_wecom: FakeWeCom, body: dict[str, Any]) -> None:
    """Checked before sending, so that a content bug uses none of the robot's 20 a minute."""
    async with sender_for(fake_wecom) as sender:
        result = await sender.push(KEY, body)
    assert result.status == PushStatus.FAILED
    assert result.error is not None
    assert result.error.endswith("not sent")
    assert fake_wecom.received == []


async def test_over_twenty_a_minute_the_robot_asks_to_wait_a_minute(fake_wecom: FakeWeCom) -> None:
    async with sender_for(fake_wecom) as sender:
        results = [await sender.push(KEY, markdown_body(f"消息 {n}")) for n in range(21)]
        other = await sender.push(OTHER_KEY, markdown_body("另一个群"))
    assert [result.status for result in results[:20]] == [PushStatus.SENT] * 20
    assert results[20].status == PushStatus.RETRY
    assert results[20].retry_after == RATE_LIMITED_RETRY_SECONDS == 60.0
    assert results[20].error == "45009 api freq out of limit"
    assert other.status == PushStatus.SENT, "the limit is per robot"
    assert fake_wecom.throttled == 1
    assert len(fake_wecom.accepted[KEY]) == 20


@pytest.mark.parametrize(
    ("fault", "status", "stored"),
    [
        ("500", PushStatus.RETRY, False),
        ("drop", PushStatus.RETRY, False),
        ("-1", PushStatus.RETRY, False),
        ("45009", PushStatus.RETRY, False),
        ("slow", PushStatus.UNCERTAIN, True),
    ],
)
async def test_injected_faults(fake_wecom: FakeWeCom, fault: str, status: PushStatus, stored: bool) -> None:
    fake_wecom.faults(FaultPlan(rates={fault: 1.0}, slow_seconds=5.0, max_per_key=1))
    async with sender_for(fake_wecom, timeout=0.3) as sender:
        first = await sender.push(KEY, markdown_body("第一次"))
        again = await sender.push(KEY, markdown_body("第二次"))
    assert first.status == status, first
    assert again.status == PushStatus.SENT, "one fault per key: the next push goes through"
    assert fake_wecom.injected == [(fault, KEY)]
    assert fake_wecom.contents(KEY) == (["第一次", "第二次"] if stored else ["第二次"])
    no_key_in(first, KEY)
    if fault == "45009":
        assert first.retry_after == 60.0


async def test_a_connect_timeout_is_retried() -> None:
    with unanswered_port() as port:
        sender = WeComSender(f"http://127.0.0.1:{port}", connect_timeout=0.2)
        try:
            result = await sender.push(KEY, markdown_body("x"))
        finally:
            await sender.close()
    assert result == PushResult(PushStatus.RETRY, error="connect timeout: not sent")


async def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the push: nothing listens there
    sender = WeComSender(f"http://127.0.0.1:{port}")
    try:
        result = await sender.push(KEY, markdown_body("x"))
    finally:
        await sender.close()
    assert result.status == PushStatus.RETRY
    no_key_in(result, KEY)


async def test_a_wrong_api_root_is_the_channel_being_down(fake_wecom: FakeWeCom) -> None:
    async with sender_for(fake_wecom) as good:
        assert (await good.push(KEY, markdown_body("x"))).status == PushStatus.SENT
    sender = WeComSender(fake_wecom.url + "/not-wecom")
    try:
        with pytest.raises(ChannelDown, match="not a WeCom API root"):
            await sender.push(KEY, markdown_body("x"))
    finally:
        await sender.close()


@pytest.mark.parametrize(
    "key",
    [
        "../../evil",
        f"{KEY}&key={OTHER_KEY}",
        f"{KEY}#x",
        "https://evil.example/x",
        f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
        "",
    ],
)
async def test_a_key_that_is_not_one_is_never_sent(fake_wecom: FakeWeCom, key: str) -> None:
    async with sender_for(fake_wecom) as sender:
        result = await sender.push(key, markdown_body("x"))
    assert result.status == PushStatus.FAILED
    assert fake_wecom.paths == []


@pytest.mark.parametrize(
    "root", ["ftp://qyapi.weixin.qq.com", "https://user:pw@qyapi.example", "https://a.example/?x=1", "nohost"]
)
def test_the_api_root_is_checked(root: str) -> None:
    with pytest.raises(ValueError, match="API root"):
        WeComSender(root)


async def test_a_given_session_is_used_and_left_open() -> None:
    async with running_fake_wecom(KEY) as fake, aiohttp.ClientSession() as session:
        sender = WeComSender(fake.url, session=session)
        assert (await sender.push(KEY, markdown_body("x"))).status == PushStatus.SENT
        await sender.close()
        assert not session.closed
        assert (await sender.push(KEY, markdown_body("y"))).status == PushStatus.SENT
        assert fake.contents(KEY) == ["x", "y"]
