"""The Telegram channel object: its address rule, settings, rendering for a broadcast, and deliveries through
the fake Bot API (tests/fakes/telegram_api.py): parts continued where an earlier attempt stopped, the per-chat
gap, flood control and blocked chats read as a broadcast must."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest

from channels.base import ChannelDown, PushStatus
from channels.channel import Delivery, Outcome, Rendered
from channels.document import IssueDocument, build_document, summary_parser
from channels.links import LinkPolicy, LinkRewriter
from channels.parts import MAYBE_LOST
from channels.telegram.channel import TELEGRAM, TelegramOutbox, TelegramSettings
from channels.telegram.payload import TelegramPayload
from content.errors import BadInput
from content.parser import parse_issue
from content.source import read_issue_file
from storage.tables import NAME_LENGTH
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.pace import RecordingPace
from tests.fakes.telegram_api import TOKEN, FakeTelegram, fake_telegram

__all__ = ["fake_telegram"]  # the fixture, used by name

DAY = dt.date(2020, 7, 2)
CHAT = 100_200


def document() -> IssueDocument:
    issue = parse_issue(read_issue_file(corpus_dir() / f"{DAY}.md"))
    policy = LinkPolicy("telegram", public_url="https://jianbao.example", tracking=True, secret=b"test")
    return build_document(issue, LinkRewriter(policy, issue.date), summary_parser())


def settings_for(fake: FakeTelegram, **changes: object) -> TelegramSettings:
    values: dict[str, object] = {
        "telegram_token": TOKEN,
        "telegram_api_url": fake.url,
        "rate_limits": False,
        "send_timeout": 2.0,
        **changes,
    }
    return TelegramSettings.model_validate(values)


def delivery(**changes: object) -> Delivery:
    values: dict[str, object] = {"id": 1, "broadcast_id": 7, "issue_date": DAY, "address": str(CHAT)}
    return Delivery(**(values | changes))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return TELEGRAM.render(document(), TelegramSettings())


@pytest.fixture
async def outbox(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramOutbox]:
    sender = await TELEGRAM.open_sender(settings_for(fake_telegram))
    try:
        yield sender
    finally:
        await sender.close()


def texts(rendered: Rendered) -> list[str]:
    payload = rendered.payload
    assert isinstance(payload, TelegramPayload)
    return [message.text for message in payload.messages]


# --- addresses (moved from storage.subscribers.check_address) ------------------------------------------


@pytest.mark.parametrize("address", ["123456789", "-1001234567890", str(2**63 - 1), str(-(2**63))])
def test_check_address_accepts(address: str) -> None:
    assert TELEGRAM.check_address(address) == address
    assert TELEGRAM.check_address(f" {address}  ") == address  # spaces around what was typed are dropped
    assert TELEGRAM.address_key(address) == address


@pytest.mark.parametrize("address", ["12a", "0", "007", "99999999999999999999", str(2**63), "", "1 2", "+42"])
def test_check_address_refuses(address: str) -> None:
    with pytest.raises(BadInput, match="a Telegram chat id is an integer"):
        TELEGRAM.check_address(address)


def test_no_secret_goes_with_a_chat_id() -> None:
    assert TELEGRAM.check_secret(None) is None
    with pytest.raises(BadInput, match="takes no secret"):
        TELEGRAM.check_secret("s3cret")


def test_the_name_fits_the_channel_column() -> None:
    assert TELEGRAM.name.isidentifier()
    assert len(TELEGRAM.name) <= NAME_LENGTH


# --- settings -------------------------------------------------------------------------------------------


def test_off_reason() -> None:
    assert TELEGRAM.off_reason(TelegramSettings()) == "JIANBAO_TELEGRAM_TOKEN is not set"
    assert TELEGRAM.off_reason(TelegramSettings(telegram_token=TOKEN)) == ""


def test_rate_is_the_account_limit_unless_limits_are_off() -> None:
    assert TELEGRAM.rate(TelegramSettings()) == 30.0
    assert TELEGRAM.rate(TelegramSettings(telegram_rate=12.5)) == 12.5
    assert TELEGRAM.rate(TelegramSettings(rate_limits=False)) == 0.0


# --- rendering ------------------------------------------------------------------------------------------


def test_render_counts_messages_and_their_lengths(rendered: Rendered) -> None:
    payload = rendered.payload
    assert isinstance(payload, TelegramPayload)
    assert len(payload.messages) > 1  # the delivery tests below need several parts
    assert rendered.parts == len(payload.messages)
    assert rendered.links == payload.links
    assert rendered.links  # the issue's links, to be tracked before anything goes out
    assert rendered.sizes == {
        "messages": len(payload.messages),
        "characters": [message.length for message in payload.messages],
    }
    assert rendered.to_dict() == payload.to_dict()
    assert rendered.preview() == payload.preview()


def test_max_messages_trims_the_issue() -> None:
    assert TELEGRAM.fits_messages
    one = TELEGRAM.render(document(), TelegramSettings(), max_messages=1)
    assert one.parts == 1
    assert one.sizes["messages"] == 1


# --- delivering -----------------------------------------------------------------------------------------


async def test_a_delivery_sends_every_part_in_order(
    fake_telegram: FakeTelegram, outbox: TelegramOutbox, rendered: Rendered
) -> None:
    pace = RecordingPace()
    outcome = await TELEGRAM.deliver(outbox, rendered, delivery(), pace)

    sent = [params["text"] for params in fake_telegram.sent_to(CHAT)]
    assert sent == texts(rendered)
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.finished
    assert outcome.parts_done == rendered.parts
    assert outcome.message_id is not None
    ids = outcome.message_id.split(",")
    assert len(ids) == rendered.parts
    # Each part but the last is reported before the next goes out.
    assert pace.reached_calls == [(n, ",".join(ids[:n]), False) for n in range(1, rendered.parts)]
    assert pace.slots == rendered.parts


async def test_a_delivery_continues_from_the_part_it_had_reached(
    fake_telegram: FakeTelegram, outbox: TelegramOutbox, rendered: Rendered
) -> None:
    pace = RecordingPace()
    outcome = await TELEGRAM.deliver(outbox, rendered, delivery(parts_done=1, message_id="555"), pace)

    sent = [params["text"] for params in fake_telegram.sent_to(CHAT)]
    assert sent == texts(rendered)[1:]  # the first part is not sent again
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.parts_done == rendered.parts
    assert outcome.message_id is not None
    ids = outcome.message_id.split(",")
    assert ids[0] == "555"
    assert len(ids) == rendered.parts
    assert pace.reached_calls == [(n, ",".join(ids[:n]), False) for n in range(2, rendered.parts)]
    assert pace.slots == rendered.parts - 1


async def test_a_finished_delivery_sends_nothing(
    fake_telegram: FakeTelegram, outbox: TelegramOutbox, rendered: Rendered
) -> None:
    outcome = await TELEGRAM.deliver(
        outbox, rendered, delivery(parts_done=rendered.parts, message_id="1,2,3"), RecordingPace()
    )
    assert outcome == Outcome(outcome.pushed, rendered.parts, "1,2,3")
    assert outcome.pushed.status == PushStatus.SENT
    assert fake_telegram.sent_to(CHAT) == []


async def test_messages_to_one_chat_keep_the_chat_interval(
    fake_telegram: FakeTelegram, rendered: Rendered
) -> None:
    interval = 0.25
    sender = await TELEGRAM.open_sender(
        settings_for(fake_telegram, rate_limits=True, telegram_chat_interval=interval)
    )
    try:
        outcome = await TELEGRAM.deliver(sender, rendered, delivery(), RecordingPace())
    finally:
        await sender.close()
    assert outcome.parts_done == rendered.parts
    times = fake_telegram.accepted_times()
    assert len(times) == rendered.parts
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= interval * 0.95, gaps


async def test_without_rate_limits_there_is_no_chat_interval(fake_telegram: FakeTelegram) -> None:
    sender = await TELEGRAM.open_sender(settings_for(fake_telegram, telegram_chat_interval=30.0))
    try:
        assert sender.chat_interval == 0.0
    finally:
        await sender.close()


async def test_flood_control_is_a_retry_after_the_platforms_wait(
    fake_telegram: FakeTelegram, outbox: TelegramOutbox, rendered: Rendered
) -> None:
    fake_telegram.flood(retry_after=7)
    pace = RecordingPace()
    outcome = await TELEGRAM.deliver(outbox, rendered, delivery(parts_done=1, message_id="555"), pace)

    assert outcome.pushed.status == PushStatus.RETRY
    assert outcome.pushed.retry_after == 7.0
    assert not outcome.finished
    assert (outcome.parts_done, outcome.message_id) == (1, "555")  # where it had got to, kept
    assert fake_telegram.sent_to(CHAT) == []
    assert pace.reached_calls == []


class FloodAfterFirstPart(RecordingPace):
    """A pace that, once the first part is reported, has the fake answer the next send with a 429."""

    def __init__(self, fake: FakeTelegram) -> None:
        super().__init__()
        self.fake = fake

    async def reached(self, parts_done: int, message_id: str | None, *, uncertain: bool = False) -> None:
        await super().reached(parts_done, message_id, uncertain=uncertain)
        if parts_done == 1:
            self.fake.flood(retry_after=3)


async def test_a_refusal_mid_delivery_keeps_the_parts_that_went_out(
    fake_telegram: FakeTelegram, outbox: TelegramOutbox, rendered: Rendered
) -> None:
    pace = FloodAfterFirstPart(fake_telegram)
    first = await TELEGRAM.deliver(outbox, rendered, delivery(), pace)
    assert first.pushed.status == PushStatus.RETRY
    assert first.pushed.retry_after == 3.0
    assert first.parts_done == 1
    assert first.message_id == pace.reached_calls[0][1]

    again = await TELEGRAM.deliver(
        outbox, rendered, delivery(parts_done=first.parts_done, message_id=first.message_id), RecordingPace()
    )
    assert again.pushed.status == PushStatus.SENT
    assert again.message_id is not None
    assert again.message_id.startswith(f"{first.message_id},")
    # Every message arrived once.
    assert [params["text"] for params in fake_telegram.sent_to(CHAT)] == texts(rendered)


async def test_a_blocked_chat_is_blocked(
    fake_telegram: FakeTelegram, outbox: TelegramOutbox, rendered: Rendered
) -> None:
    fake_telegram.blocked.add(CHAT)
    outcome = await TELEGRAM.deliver(outbox, rendered, delivery(), RecordingPace())
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert outcome.parts_done == 0
    assert outcome.message_id is None
    assert not outcome.uncertain


async def test_a_late_answer_counts_as_sent_but_uncertain(
    fake_telegram: FakeTelegram, rendered: Rendered
) -> None:
    sender = await TELEGRAM.open_sender(settings_for(fake_telegram, send_timeout=0.3))
    fake_telegram.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=2.0, max_per_key=1))
    try:
        pace = RecordingPace()
        outcome = await TELEGRAM.deliver(sender, rendered, delivery(), pace)
    finally:
        await sender.close()
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.pushed.error == MAYBE_LOST
    assert outcome.uncertain
    assert outcome.parts_done == rendered.parts
    assert pace.reached_calls[0][2]  # the first part's uncertainty is recorded with it


async def test_a_refused_token_is_channel_down(fake_telegram: FakeTelegram) -> None:
    with pytest.raises(ChannelDown, match="refused the bot token"):
        await TELEGRAM.open_sender(settings_for(fake_telegram, telegram_token="999:WRONG"))
