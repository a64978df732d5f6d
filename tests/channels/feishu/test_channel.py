"""FEISHU, the `Channel` (channels/channel.py) over the Feishu package: what it says of itself, its
addresses, secrets and settings, and deliveries through the fake custom-bot webhook
(tests/fakes/feishu_api.py), signed when the bot has a secret, paced per bot on a virtual clock that the
fake's rate windows share, so that a bot's minute passes at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.base import ChannelDown, PushStatus
from channels.channel import Delivery, Rendered
from channels.document import IssueDocument, build_document, summary_parser
from channels.feishu import MARGIN_SECONDS, WINDOWS
from channels.feishu.channel import FEISHU, FeishuChannel, FeishuSettings
from channels.feishu.transport import RATE_LIMITED_RETRY_SECONDS, FeishuSender
from channels.links import LinkPolicy, LinkRewriter
from channels.pacing import RobotPacer
from content.errors import BadInput
from content.model import Issue, Item, Section
from content.parser import parse_issue
from content.source import read_issue_file
from tests.channels.feishu.test_address import HOSTILE
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.feishu_api import OTHER_TOKEN, PER_MINUTE, PER_SECOND, SECRET, TOKEN, FakeFeishu
from tests.fakes.pace import RecordingPace
from tests.fakes.robot_api import VirtualClock

OFFICIAL = f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"
POLICY = LinkPolicy("feishu", public_url="https://jianbao.example", tracking=False)


def corpus_document(stem: str = "2020-07-02") -> IssueDocument:
    issue = parse_issue(read_issue_file(corpus_dir() / f"{stem}.md"))
    return build_document(issue, LinkRewriter(POLICY, issue.date), summary_parser())


def big_document(items: int = 200) -> IssueDocument:
    """An issue of many messages: far over one bot's 5 a second."""
    entries = tuple(
        Item(n, f"条目 {n}", url=f"https://example.com/{n}", source="源", summary="摘要" * 600)
        for n in range(1, items + 1)
    )
    issue = Issue(date=dt.date(2024, 1, 3), title="大", sections=(Section("多", 1, entries),))
    return build_document(issue, LinkRewriter(POLICY, issue.date), summary_parser())


def rendered_issue(document: IssueDocument | None = None) -> Rendered:
    return FEISHU.render(document or corpus_document(), FeishuSettings())


def messages(rendered: Rendered) -> list[Any]:
    """The bodies of `render --json`: each exactly what goes to the bot (before a signature)."""
    data = rendered.to_dict()
    assert list(data) == ["channel", "messages", "links"]
    assert data["channel"] == "feishu"
    bodies = data["messages"]
    assert isinstance(bodies, list)
    return bodies


def delivery(address: str | None = TOKEN, **options: Any) -> Delivery:
    return Delivery(id=1, broadcast_id=1, issue_date=dt.date(2020, 7, 2), address=address, **options)


@asynccontextmanager
async def opened(fake: FakeFeishu, clock: VirtualClock | None = None, **options: Any) -> AsyncIterator[Any]:
    """The channel's own sender for the fake; with `clock`, its pacer (Feishu's documented limits) and the
    fake's rate windows run on that clock."""
    sender = await FEISHU.open_sender(FeishuSettings(feishu_api_url=fake.url, **options))
    if clock is not None:
        documented = sender.pacer
        sender.pacer = RobotPacer(
            documented.windows, margin=documented.margin, clock=clock, sleep=clock.sleep
        )
        fake.window_clock = clock
    try:
        yield sender
    finally:
        await sender.close()


# --- what the channel says of itself ---------------------------------------------------------------------


def test_the_channel_is_a_per_bot_multi_message_channel() -> None:
    assert isinstance(FEISHU, FeishuChannel)
    assert FEISHU.name == "feishu"
    assert "飞书" in FEISHU.label
    assert "\n" not in FEISHU.label
    assert FEISHU.settings is FeishuSettings
    assert FEISHU.fits_messages
    assert not FEISHU.throttles_account, "5 a second and 100 a minute are each bot's own limits"
    assert FEISHU.rate(FeishuSettings()) == 0.0
    assert FEISHU.plan({}).direct
    assert not FEISHU.plan({}).mass


def test_the_setting_is_declared_once_with_a_one_line_description() -> None:
    field = FeishuSettings.model_fields["feishu_api_url"]
    assert field.default == "https://open.feishu.cn"
    assert field.description
    assert "\n" not in field.description


@pytest.mark.parametrize("address", [TOKEN, OFFICIAL])
def test_an_address_is_stored_as_the_hook_token(address: str) -> None:
    assert FEISHU.check_address(address) == TOKEN
    assert FEISHU.address_key(TOKEN) == TOKEN


@pytest.mark.parametrize("address", list(HOSTILE.values()), ids=list(HOSTILE))
def test_anything_else_is_refused_in_one_line(address: str) -> None:
    with pytest.raises(BadInput) as refused:
        FEISHU.check_address(address)
    assert "\n" not in refused.value.message
    assert TOKEN not in refused.value.message


@pytest.mark.parametrize(("secret", "stored"), [(None, None), ("", None), (SECRET, SECRET)])
def test_a_signing_secret_is_optional(secret: str | None, stored: str | None) -> None:
    assert FEISHU.check_secret(secret) == stored


@pytest.mark.parametrize(
    "secret", ["short", "has space in it", "tab\tsecret!", "密钥密钥密钥密钥", "x" * 129]
)
def test_a_secret_of_the_wrong_shape_is_refused_in_one_line(secret: str) -> None:
    with pytest.raises(BadInput) as refused:
        FEISHU.check_secret(secret)
    assert refused.value.message.startswith("feishu: ")
    assert "\n" not in refused.value.message
    assert secret not in refused.value.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://open.feishu.cn", ""),
        ("http://127.0.0.1:8080/", ""),
        ("", "JIANBAO_FEISHU_API_URL is empty"),
        ("ftp://open.feishu.cn", "JIANBAO_FEISHU_API_URL is not an http(s) URL"),
        ("open.feishu.cn", "JIANBAO_FEISHU_API_URL is not an http(s) URL"),
        ("https://user:pw@open.feishu.cn", "JIANBAO_FEISHU_API_URL is not an http(s) URL"),
        ("https://open.feishu.cn/#x", "JIANBAO_FEISHU_API_URL is not an http(s) URL"),
    ],
)
def test_off_reasons(url: str, reason: str) -> None:
    found = FEISHU.off_reason(FeishuSettings(feishu_api_url=url))
    assert found.startswith(reason) if reason else found == ""
    assert "\n" not in found


async def test_a_channel_that_is_off_opens_no_sender() -> None:
    with pytest.raises(ChannelDown, match="JIANBAO_FEISHU_API_URL is empty"):
        await FEISHU.open_sender(FeishuSettings(feishu_api_url=""))


async def test_the_sender_has_the_documented_pacer_and_the_settings_timeout(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN)
    fake_feishu.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=5.0, max_per_key=1))
    rendered = rendered_issue()
    async with opened(fake_feishu, send_timeout=0.2) as sender:
        assert isinstance(sender, FeishuSender)
        assert (sender.pacer.windows, sender.pacer.margin) == (WINDOWS, MARGIN_SECONDS)
        outcome = await FEISHU.deliver(sender, rendered, delivery(), RecordingPace())
    assert outcome.finished
    assert outcome.uncertain, "JIANBAO_SEND_TIMEOUT is the sender's: the slow part may have arrived"
    assert fake_feishu.messages(TOKEN) == messages(rendered), "and it is not resent"


# --- deliveries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, SECRET])
async def test_every_part_goes_out_in_order_exactly_as_rendered(
    fake_feishu: FakeFeishu, secret: str | None
) -> None:
    fake_feishu.add_robot(TOKEN, secret)
    rendered = rendered_issue(big_document(20))
    assert rendered.parts == len(messages(rendered)) >= 3
    seen: list[int] = []
    pace = RecordingPace(on_reached=lambda done: seen.append(len(fake_feishu.accepted[TOKEN])))
    async with opened(fake_feishu, VirtualClock()) as sender:
        outcome = await FEISHU.deliver(sender, rendered, delivery(secret=secret), pace)
    assert outcome.finished
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.parts_done == rendered.parts
    assert fake_feishu.messages(TOKEN) == messages(rendered)
    signed = [{"timestamp", "sign"} <= set(body) for body in fake_feishu.accepted[TOKEN]]
    assert signed == [secret is not None] * rendered.parts
    assert [done for done, _, _ in pace.reached_calls] == list(range(1, rendered.parts))
    assert seen == list(range(1, rendered.parts)), "progress is reported before the next part goes out"
    assert pace.slots == rendered.parts, "each push takes one slot of the shared rate"


async def test_a_delivery_goes_on_from_where_it_had_got_to(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN, SECRET)
    rendered = rendered_issue()
    assert rendered.parts >= 2
    async with opened(fake_feishu) as sender:
        outcome = await FEISHU.deliver(
            sender, rendered, delivery(secret=SECRET, parts_done=1, message_id="?"), RecordingPace()
        )
    assert outcome.finished
    assert outcome.parts_done == rendered.parts
    assert fake_feishu.messages(TOKEN) == messages(rendered)[1:]
    assert outcome.message_id == ",".join(["?"] * rendered.parts)


async def test_a_bot_removed_mid_delivery_stops_it_with_its_progress(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN)
    rendered = rendered_issue()
    pace = RecordingPace(on_reached=lambda done: fake_feishu.remove_robot(TOKEN))
    async with opened(fake_feishu) as sender:
        outcome = await FEISHU.deliver(sender, rendered, delivery(), pace)
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert outcome.parts_done == 1
    assert fake_feishu.messages(TOKEN) == messages(rendered)[:1]


async def test_an_unknown_token_is_blocked_at_once(fake_feishu: FakeFeishu) -> None:
    async with opened(fake_feishu) as sender:
        outcome = await FEISHU.deliver(sender, rendered_issue(), delivery(), RecordingPace())
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert (outcome.pushed.error or "").startswith("19001 ")
    assert outcome.parts_done == 0
    assert fake_feishu.error_codes() == [19001], "nothing more is tried"


@pytest.mark.parametrize("secret", ["another-secret-value", None])
async def test_a_refused_signature_fails_and_does_not_block(
    fake_feishu: FakeFeishu, secret: str | None
) -> None:
    """自定义机器人使用指南: 19021 for a wrong signature or a timestamp off by more than an hour. FAILED,
    never BLOCKED: a wrong stored secret, or our clock, not a bot gone (channels/feishu/transport.py)."""
    fake_feishu.add_robot(TOKEN, SECRET)
    async with opened(fake_feishu) as sender:
        outcome = await FEISHU.deliver(sender, rendered_issue(), delivery(secret=secret), RecordingPace())
    assert outcome.pushed.status == PushStatus.FAILED
    assert (outcome.pushed.error or "").startswith("19021 ")
    assert SECRET not in (outcome.pushed.error or "")
    assert outcome.parts_done == 0
    assert fake_feishu.error_codes() == [19021]
    assert fake_feishu.accepted == {}


async def test_a_bot_over_its_limits_is_paced_not_refused(fake_feishu: FakeFeishu) -> None:
    """Deliveries of one issue to one bot, more than 100 messages in all: on the shared virtual clock the
    fake counts 5 a second and 100 a minute, and never has to refuse one."""
    fake_feishu.add_robot(TOKEN)
    rendered = rendered_issue(big_document())
    assert rendered.parts > 2 * PER_SECOND
    rounds = PER_MINUTE // rendered.parts + 1
    clock = VirtualClock()
    async with opened(fake_feishu, clock) as sender:
        for _ in range(rounds):
            assert (await FEISHU.deliver(sender, rendered, delivery(), RecordingPace())).finished
        assert fake_feishu.throttled == 0
        assert fake_feishu.errors == []
        assert fake_feishu.messages(TOKEN) == messages(rendered) * rounds
        times = fake_feishu.accepted_at[TOKEN]
        assert len(times) > PER_MINUTE
        assert all(later - first > 1.0 for first, later in zip(times, times[PER_SECOND:], strict=False))
        assert all(later - first > 60.0 for first, later in zip(times, times[PER_MINUTE:], strict=False))
        # The fake does count on that clock: one push more, unpaced, is refused.
        unpaced = await sender.push(TOKEN, messages(rendered)[0])
    assert unpaced.status == PushStatus.RETRY
    assert fake_feishu.throttled == 1


async def test_a_retry_after_holds_that_bot_only(fake_feishu: FakeFeishu) -> None:
    fake_feishu.add_robot(TOKEN)
    fake_feishu.add_robot(OTHER_TOKEN)
    fake_feishu.faults(FaultPlan(rates={"11232": 1.0}, max_per_key=1))
    rendered = rendered_issue()
    clock = VirtualClock()
    async with opened(fake_feishu, clock) as sender:
        held = await FEISHU.deliver(sender, rendered, delivery(), RecordingPace())
        assert held.pushed.status == PushStatus.RETRY
        assert held.pushed.retry_after == RATE_LIMITED_RETRY_SECONDS
        assert held.parts_done == 0
        fake_feishu.faults(None)
        other = await FEISHU.deliver(sender, rendered, delivery(OTHER_TOKEN), RecordingPace())
        assert other.finished
        assert clock.slept == [], "another bot is not delayed"
        again = await FEISHU.deliver(sender, rendered, delivery(), RecordingPace())
    assert again.finished
    assert clock.slept == [RATE_LIMITED_RETRY_SECONDS], "the held bot waits out its minute first"
    assert fake_feishu.messages(TOKEN) == fake_feishu.messages(OTHER_TOKEN) == messages(rendered)


async def test_a_delivery_without_an_address_fails(fake_feishu: FakeFeishu) -> None:
    async with opened(fake_feishu) as sender:
        outcome = await FEISHU.deliver(sender, rendered_issue(), delivery(None), RecordingPace())
    assert outcome.pushed.status == PushStatus.FAILED
    assert fake_feishu.paths == []
