"""WECOM, the `Channel` (channels/channel.py) over the WeCom package: what it says of itself, its addresses
and settings, and deliveries through the fake robot webhook (tests/fakes/wecom_api.py), paced per robot on
a virtual clock that the fake's rate window shares, so that a robot's minute passes at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.base import ChannelDown, PushStatus
from channels.channel import Delivery, Outcome, Rendered
from channels.document import IssueDocument, build_document, summary_parser
from channels.links import LinkPolicy, LinkRewriter
from channels.pacing import RobotPacer
from channels.wecom import MARGIN_SECONDS, WINDOWS, markdown_body
from channels.wecom.channel import WECOM, WeComChannel, WeComSettings
from channels.wecom.transport import RATE_LIMITED_RETRY_SECONDS, WeComSender
from content.errors import BadInput
from content.model import Issue, Item, Section
from content.parser import parse_issue
from content.source import read_issue_file
from tests.channels.wecom.test_address import HOSTILE
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.pace import RecordingPace
from tests.fakes.robot_api import VirtualClock
from tests.fakes.wecom_api import KEY, OTHER_KEY, PER_WINDOW, FakeWeCom

UNKNOWN_KEY = "11111111-2222-4333-8444-555555555555"
OFFICIAL = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
POLICY = LinkPolicy("wecom", public_url="https://jianbao.example", tracking=False)


def corpus_document(stem: str = "2020-07-02") -> IssueDocument:
    issue = parse_issue(read_issue_file(corpus_dir() / f"{stem}.md"))
    return build_document(issue, LinkRewriter(POLICY, issue.date), summary_parser())


def big_document(items: int = 300) -> IssueDocument:
    """An issue far over one robot's 20 messages a minute."""
    entries = tuple(
        Item(n, f"条目 {n}", url=f"https://example.com/{n}", source="源", summary="摘要 " * 100)
        for n in range(1, items + 1)
    )
    issue = Issue(date=dt.date(2024, 1, 3), title="大", sections=(Section("多", 1, entries),))
    return build_document(issue, LinkRewriter(POLICY, issue.date), summary_parser())


def rendered_issue(document: IssueDocument | None = None) -> Rendered:
    return WECOM.render(document or corpus_document(), WeComSettings())


def messages(rendered: Rendered) -> list[Any]:
    """The bodies of `render --json`: each exactly what goes to the robot."""
    data = rendered.to_dict()
    assert list(data) == ["channel", "messages", "links"]
    assert data["channel"] == "wecom"
    bodies = data["messages"]
    assert isinstance(bodies, list)
    return bodies


def delivery(address: str | None = KEY, **options: Any) -> Delivery:
    return Delivery(id=1, broadcast_id=1, issue_date=dt.date(2020, 7, 2), address=address, **options)


def settings(fake: FakeWeCom, **options: Any) -> WeComSettings:
    return WeComSettings(wecom_api_url=fake.url, **options)


@asynccontextmanager
async def opened(fake: FakeWeCom, clock: VirtualClock | None = None, **options: Any) -> AsyncIterator[Any]:
    """The channel's own sender for the fake; with `clock`, its pacer (WeCom's documented limit) and the
    fake's rate window run on that clock."""
    sender = await WECOM.open_sender(settings(fake, **options))
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


def test_the_channel_is_a_per_robot_multi_message_channel() -> None:
    assert isinstance(WECOM, WeComChannel)
    assert WECOM.name == "wecom"
    assert "企业微信" in WECOM.label
    assert "\n" not in WECOM.label
    assert WECOM.settings is WeComSettings
    assert WECOM.fits_messages
    assert not WECOM.throttles_account, "20 a minute is each robot's own limit"
    assert WECOM.rate(WeComSettings()) == 0.0
    assert WECOM.plan({}).direct
    assert not WECOM.plan({}).mass


def test_the_setting_is_declared_once_with_a_one_line_description() -> None:
    field = WeComSettings.model_fields["wecom_api_url"]
    assert field.default == "https://qyapi.weixin.qq.com"
    assert field.description
    assert "\n" not in field.description


@pytest.mark.parametrize("address", [KEY, OFFICIAL])
def test_an_address_is_stored_as_the_robot_key(address: str) -> None:
    assert WECOM.check_address(address) == KEY
    assert WECOM.address_key(KEY) == KEY


@pytest.mark.parametrize("address", list(HOSTILE.values()), ids=list(HOSTILE))
def test_anything_else_is_refused_in_one_line(address: str) -> None:
    with pytest.raises(BadInput) as refused:
        WECOM.check_address(address)
    assert "\n" not in refused.value.message
    assert KEY not in refused.value.message


def test_a_robot_takes_no_secret() -> None:
    assert WECOM.check_secret(None) is None
    assert WECOM.check_secret("") is None
    with pytest.raises(BadInput, match="takes no secret"):
        WECOM.check_secret("nIMtb7r3N9pkXyXdtAbx6e")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://qyapi.weixin.qq.com", ""),
        ("http://127.0.0.1:8080/", ""),
        ("", "JIANBAO_WECOM_API_URL is empty"),
        ("ftp://qyapi.weixin.qq.com", "JIANBAO_WECOM_API_URL is not an http(s) URL"),
        ("qyapi.weixin.qq.com", "JIANBAO_WECOM_API_URL is not an http(s) URL"),
        ("https://user:pw@qyapi.weixin.qq.com", "JIANBAO_WECOM_API_URL is not an http(s) URL"),
        ("https://qyapi.weixin.qq.com/?x=1", "JIANBAO_WECOM_API_URL is not an http(s) URL"),
    ],
)
def test_off_reasons(url: str, reason: str) -> None:
    found = WECOM.off_reason(WeComSettings(wecom_api_url=url))
    assert found.startswith(reason) if reason else found == ""
    assert "\n" not in found


async def test_a_channel_that_is_off_opens_no_sender() -> None:
    with pytest.raises(ChannelDown, match="JIANBAO_WECOM_API_URL is empty"):
        await WECOM.open_sender(WeComSettings(wecom_api_url=""))


async def test_the_sender_has_the_documented_pacer_and_the_settings_timeout(fake_wecom: FakeWeCom) -> None:
    fake_wecom.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=5.0, max_per_key=1))
    async with opened(fake_wecom, send_timeout=0.2) as sender:
        assert isinstance(sender, WeComSender)
        assert (sender.pacer.windows, sender.pacer.margin) == (WINDOWS, MARGIN_SECONDS)
        result = await sender.push(KEY, markdown_body("迟到"))
    assert result.status == PushStatus.UNCERTAIN, "JIANBAO_SEND_TIMEOUT is the sender's"
    assert fake_wecom.contents(KEY) == ["迟到"]


# --- deliveries ------------------------------------------------------------------------------------------


async def test_every_part_goes_out_in_order_exactly_as_rendered(fake_wecom: FakeWeCom) -> None:
    rendered = rendered_issue()
    assert rendered.parts == len(messages(rendered)) >= 3
    seen: list[int] = []
    pace = RecordingPace(on_reached=lambda done: seen.append(len(fake_wecom.accepted[KEY])))
    async with opened(fake_wecom) as sender:
        outcome = await WECOM.deliver(sender, rendered, delivery(), pace)
    assert outcome.finished
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.parts_done == rendered.parts
    assert not outcome.uncertain
    assert fake_wecom.accepted[KEY] == messages(rendered)
    assert [done for done, _, _ in pace.reached_calls] == list(range(1, rendered.parts))
    assert seen == list(range(1, rendered.parts)), "progress is reported before the next part goes out"
    assert pace.slots == rendered.parts, "each push takes one slot of the shared rate"


async def test_a_delivery_goes_on_from_where_it_had_got_to(fake_wecom: FakeWeCom) -> None:
    rendered = rendered_issue()
    bodies = messages(rendered)
    async with opened(fake_wecom) as sender:
        outcome = await WECOM.deliver(
            sender, rendered, delivery(parts_done=2, message_id="?,?"), RecordingPace()
        )
    assert outcome.finished
    assert outcome.parts_done == rendered.parts
    assert fake_wecom.accepted[KEY] == bodies[2:]
    assert outcome.message_id == ",".join(["?"] * rendered.parts)


async def test_a_robot_removed_mid_delivery_stops_it_with_its_progress(fake_wecom: FakeWeCom) -> None:
    rendered = rendered_issue()
    pace = RecordingPace(on_reached=lambda done: fake_wecom.remove_robot(KEY))
    async with opened(fake_wecom) as sender:
        outcome = await WECOM.deliver(sender, rendered, delivery(), pace)
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert outcome.parts_done == 1
    assert not outcome.finished
    assert fake_wecom.accepted[KEY] == messages(rendered)[:1]


async def test_an_unknown_key_is_blocked_at_once(fake_wecom: FakeWeCom) -> None:
    async with opened(fake_wecom) as sender:
        outcome = await WECOM.deliver(sender, rendered_issue(), delivery(UNKNOWN_KEY), RecordingPace())
    assert outcome == Outcome(outcome.pushed, 0, None)
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert (outcome.pushed.error or "").startswith("93000 ")
    assert UNKNOWN_KEY not in (outcome.pushed.error or "")
    assert fake_wecom.error_codes() == [93000], "nothing more is tried"


async def test_a_part_without_an_answer_is_not_resent(fake_wecom: FakeWeCom) -> None:
    fake_wecom.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=5.0, max_per_key=1))
    rendered = rendered_issue()
    async with opened(fake_wecom, send_timeout=0.2) as sender:
        outcome = await WECOM.deliver(sender, rendered, delivery(), RecordingPace())
    assert outcome.finished
    assert outcome.uncertain
    assert fake_wecom.accepted[KEY] == messages(rendered)
    assert max(fake_wecom.delivered().values()) == 1


async def test_a_robot_over_its_twenty_a_minute_is_paced_not_refused(fake_wecom: FakeWeCom) -> None:
    rendered = rendered_issue(big_document())
    assert rendered.parts > 2 * PER_WINDOW
    clock = VirtualClock()
    pace = RecordingPace()
    async with opened(fake_wecom, clock) as sender:
        outcome = await WECOM.deliver(sender, rendered, delivery(), pace)
        assert outcome.finished
        assert fake_wecom.throttled == 0
        assert fake_wecom.errors == []
        assert fake_wecom.accepted[KEY] == messages(rendered)
        times = fake_wecom.accepted_at[KEY]
        assert all(later - first > 60.0 for first, later in zip(times, times[PER_WINDOW:], strict=False))
        assert clock.now - 1000.0 >= 60.0 * ((rendered.parts - 1) // PER_WINDOW)
        # The fake does count on that clock: one push more, unpaced, is refused.
        unpaced = await sender.push(KEY, markdown_body("再来一条"))
    assert unpaced.status == PushStatus.RETRY
    assert fake_wecom.throttled == 1


async def test_a_retry_after_holds_that_robot_only(fake_wecom: FakeWeCom) -> None:
    fake_wecom.faults(FaultPlan(rates={"45009": 1.0}, max_per_key=1))
    rendered = rendered_issue()
    clock = VirtualClock()
    async with opened(fake_wecom, clock) as sender:
        held = await WECOM.deliver(sender, rendered, delivery(), RecordingPace())
        assert held.pushed.status == PushStatus.RETRY
        assert held.pushed.retry_after == RATE_LIMITED_RETRY_SECONDS
        assert held.parts_done == 0
        fake_wecom.faults(None)
        other = await WECOM.deliver(sender, rendered, delivery(OTHER_KEY), RecordingPace())
        assert other.finished
        assert clock.slept == [], "another robot is not delayed"
        again = await WECOM.deliver(sender, rendered, delivery(), RecordingPace())
    assert again.finished
    assert clock.slept == [RATE_LIMITED_RETRY_SECONDS], "the held robot waits out its minute first"
    assert fake_wecom.accepted[KEY] == fake_wecom.accepted[OTHER_KEY] == messages(rendered)


async def test_a_delivery_without_an_address_fails(fake_wecom: FakeWeCom) -> None:
    async with opened(fake_wecom) as sender:
        outcome = await WECOM.deliver(sender, rendered_issue(), delivery(None), RecordingPace())
    assert outcome.pushed.status == PushStatus.FAILED
    assert fake_wecom.paths == []
