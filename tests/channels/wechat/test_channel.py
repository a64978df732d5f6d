"""The WeChat channel object: its address rule, settings, broadcast plan and 48 h window, rendering for a
broadcast, and deliveries through the fake WeChat API (tests/fakes/wechat_api.py): the mass send as draft
then sendall (a retry reuses the draft, a resend is answered "already sent"), and customer-service texts."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator

import pytest

from channels.base import ChannelDown, PushStatus
from channels.channel import Delivery, Plan, Rendered
from channels.document import IssueDocument, build_document, summary_parser
from channels.links import LinkPolicy, LinkRewriter
from channels.wechat.channel import SKIP_WINDOW, WECHAT, WECHAT_WINDOW, WeChatOutbox, WeChatSettings
from channels.wechat.render import WeChatPayload
from content.errors import BadInput
from content.parser import parse_issue
from content.source import read_issue_file
from storage.tables import NAME_LENGTH
from tests.content.corpus import corpus_dir
from tests.fakes.faults import FaultPlan
from tests.fakes.pace import RecordingPace
from tests.fakes.wechat_api import APPID, MASS_SENDALL, SECRET, FakeWeChatApi, fake_wechat

__all__ = ["fake_wechat"]  # the fixture, used by name

DAY = dt.date(2020, 7, 2)
BROADCAST = 7
CLIENT_MSG_ID = f"jianbao-{DAY}-{BROADCAST}"
THUMB = "thumb-media-1"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"  # the shape of WeChat's documented sample openids: 28 characters
DRAFT_ADD = "/cgi-bin/draft/add"
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def document() -> IssueDocument:
    issue = parse_issue(read_issue_file(corpus_dir() / f"{DAY}.md"))
    policy = LinkPolicy("wechat", public_url="https://jianbao.example", tracking=True, secret=b"test")
    return build_document(issue, LinkRewriter(policy, issue.date), summary_parser())


def settings_for(fake: FakeWeChatApi, **changes: object) -> WeChatSettings:
    values: dict[str, object] = {
        "wechat_appid": APPID,
        "wechat_secret": SECRET,
        "wechat_api_url": fake.url,
        "wechat_thumb_media_id": THUMB,
        "send_timeout": 2.0,
        **changes,
    }
    return WeChatSettings.model_validate(values)


def mass(**changes: object) -> Delivery:
    values: dict[str, object] = {
        "id": 1,
        "broadcast_id": BROADCAST,
        "issue_date": DAY,
        "address": None,
        "mass": True,
    }
    return Delivery(**(values | changes))  # type: ignore[arg-type]


def direct(openid: str = OPENID) -> Delivery:
    return Delivery(id=2, broadcast_id=BROADCAST, issue_date=DAY, address=openid)


def payload_of(rendered: Rendered) -> WeChatPayload:
    assert isinstance(rendered.payload, WeChatPayload)
    return rendered.payload


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return WECHAT.render(document(), WeChatSettings())


@pytest.fixture
async def outbox(fake_wechat: FakeWeChatApi) -> AsyncIterator[WeChatOutbox]:
    sender = await WECHAT.open_sender(settings_for(fake_wechat))
    try:
        yield sender
    finally:
        await sender.close()


def drafts(fake: FakeWeChatApi) -> list[dict[str, object]]:
    return [call.payload for call in fake.received if call.path == DRAFT_ADD]


# --- addresses (moved from storage.subscribers.check_address) ------------------------------------------


@pytest.mark.parametrize("address", [OPENID, "o" * 64, "o_-" * 10])
def test_check_address_accepts(address: str) -> None:
    assert WECHAT.check_address(address) == address
    assert WECHAT.check_address(f"  {address} ") == address  # spaces around what was typed are dropped
    assert WECHAT.address_key(address) == address  # openids are case-sensitive


@pytest.mark.parametrize("address", ["o" * 27, "o" * 27 + "!", "o" * 65, "", OPENID[:20] + " " + OPENID[20:]])
def test_check_address_refuses(address: str) -> None:
    with pytest.raises(BadInput, match="a WeChat openid is 28-64 characters"):
        WECHAT.check_address(address)


def test_the_name_fits_the_channel_column() -> None:
    assert WECHAT.name.isidentifier()
    assert len(WECHAT.name) <= NAME_LENGTH


# --- settings and broadcast rules -----------------------------------------------------------------------


def test_off_reason_names_what_is_missing() -> None:
    both = "JIANBAO_WECHAT_APPID and JIANBAO_WECHAT_SECRET are not set"
    assert WECHAT.off_reason(WeChatSettings()) == both
    assert WECHAT.off_reason(WeChatSettings(wechat_secret=SECRET)) == "JIANBAO_WECHAT_APPID is not set"
    assert WECHAT.off_reason(WeChatSettings(wechat_appid=APPID)) == "JIANBAO_WECHAT_SECRET is not set"
    assert WECHAT.off_reason(WeChatSettings(wechat_appid=APPID, wechat_secret=SECRET)) == ""


def test_no_shared_rate() -> None:
    assert WECHAT.rate(WeChatSettings()) == 0.0


def test_plan_is_a_mass_send_and_texts_on_request() -> None:
    assert WECHAT.plan({}) == Plan(direct=False, mass=True)
    assert WECHAT.plan({"wechat_text": False}) == Plan(direct=False, mass=True)
    assert WECHAT.plan({"wechat_text": True}) == Plan(direct=True, mass=True)


@pytest.mark.parametrize(
    ("last_seen", "reason"),
    [
        (None, SKIP_WINDOW),
        (NOW - dt.timedelta(hours=1), None),
        (NOW - WECHAT_WINDOW, None),
        (NOW - WECHAT_WINDOW - dt.timedelta(seconds=1), SKIP_WINDOW),
        (NOW - dt.timedelta(days=30), SKIP_WINDOW),
    ],
)
def test_skip_reason_is_the_48_hour_window(last_seen: dt.datetime | None, reason: str | None) -> None:
    assert WECHAT.skip_reason(last_seen_at=last_seen, now=NOW) == reason


# --- rendering ------------------------------------------------------------------------------------------


def test_render_gives_the_article_and_the_text(rendered: Rendered) -> None:
    payload = payload_of(rendered)
    assert rendered.parts == 2  # the draft, then the mass send
    assert rendered.links == payload.links
    assert rendered.links
    assert rendered.sizes == {
        "title": payload.article.title,
        "text_bytes": len(payload.text.encode("utf-8")),
    }
    assert rendered.to_dict() == payload.to_dict()


def test_max_messages_is_refused() -> None:
    assert not WECHAT.fits_messages
    with pytest.raises(BadInput, match=r"--max-messages only applies .*wechat"):
        WECHAT.render(document(), WeChatSettings(), max_messages=2)


# --- the mass send --------------------------------------------------------------------------------------


async def test_a_mass_delivery_adds_a_draft_then_sends_it(
    fake_wechat: FakeWeChatApi, outbox: WeChatOutbox, rendered: Rendered
) -> None:
    pace = RecordingPace()
    outcome = await WECHAT.deliver(outbox, rendered, mass(), pace)

    [draft] = drafts(fake_wechat)
    assert draft["articles"] == [payload_of(rendered).article.to_dict() | {"thumb_media_id": THUMB}]
    [sent] = fake_wechat.mass_sends
    assert sent.clientmsgid == CLIENT_MSG_ID
    assert pace.reached_calls == [(1, sent.media_id, False)]  # the draft, recorded before the send
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.parts_done == 2
    assert outcome.message_id == f"{sent.media_id} {sent.msg_id}"
    assert outcome.pushed.message_id == outcome.message_id
    assert not outcome.uncertain


async def test_a_retried_mass_send_reuses_its_draft(
    fake_wechat: FakeWeChatApi, outbox: WeChatOutbox, rendered: Rendered
) -> None:
    fake_wechat.faults(FaultPlan(rates={"500": 1.0}, max_per_key=1))  # the first sendall fails
    pace = RecordingPace()
    first = await WECHAT.deliver(outbox, rendered, mass(), pace)
    [(_, media_id, _)] = pace.reached_calls
    assert first.pushed.status == PushStatus.RETRY
    assert (first.parts_done, first.message_id) == (1, media_id)
    assert fake_wechat.mass_sends == []

    again_pace = RecordingPace()
    again = await WECHAT.deliver(outbox, rendered, mass(parts_done=1, message_id=media_id), again_pace)
    assert again.pushed.status == PushStatus.SENT
    assert len(drafts(fake_wechat)) == 1  # no second draft
    [sent] = fake_wechat.mass_sends
    assert (sent.media_id, sent.clientmsgid) == (media_id, CLIENT_MSG_ID)
    assert again.message_id == f"{media_id} {sent.msg_id}"
    assert again_pace.reached_calls == []


async def test_a_resent_mass_send_is_already_sent(
    fake_wechat: FakeWeChatApi, outbox: WeChatOutbox, rendered: Rendered
) -> None:
    """A worker that died after sendall but before recording it: the retry is answered 45065."""
    pace = RecordingPace()
    await WECHAT.deliver(outbox, rendered, mass(), pace)
    [(_, media_id, _)] = pace.reached_calls

    again = await WECHAT.deliver(outbox, rendered, mass(parts_done=1, message_id=media_id), RecordingPace())
    assert again.pushed.status == PushStatus.SENT
    assert again.pushed.error is not None
    assert "45065" in again.pushed.error
    assert (again.parts_done, again.message_id) == (2, media_id)
    assert len(fake_wechat.mass_sends) == 1
    assert [call.path for call in fake_wechat.received].count(MASS_SENDALL) == 1


async def test_no_mass_send_left_waits_for_the_next_quota(
    fake_wechat: FakeWeChatApi, outbox: WeChatOutbox, rendered: Rendered
) -> None:
    fake_wechat.mass_quota = 0
    outcome = await WECHAT.deliver(outbox, rendered, mass(), RecordingPace())
    assert outcome.pushed.status == PushStatus.RETRY
    assert outcome.pushed.retry_after is not None
    assert 60 < outcome.pushed.retry_after <= 24 * 3600 + 60
    assert outcome.parts_done == 1  # the draft is kept for the retry


async def test_a_mass_send_needs_the_cover(fake_wechat: FakeWeChatApi, rendered: Rendered) -> None:
    sender = await WECHAT.open_sender(settings_for(fake_wechat, wechat_thumb_media_id=""))
    try:
        outcome = await WECHAT.deliver(sender, rendered, mass(), RecordingPace())
    finally:
        await sender.close()
    assert outcome.pushed.status == PushStatus.FAILED
    assert outcome.pushed.error == "JIANBAO_WECHAT_THUMB_MEDIA_ID is not set (the cover)"
    assert outcome.parts_done == 0
    assert fake_wechat.paths == []  # nothing was asked of WeChat


async def test_refused_credentials_are_channel_down(fake_wechat: FakeWeChatApi, rendered: Rendered) -> None:
    sender = await WECHAT.open_sender(settings_for(fake_wechat, wechat_secret="not-the-secret"))
    try:
        with pytest.raises(ChannelDown, match=r"wechat: .*40125"):
            await WECHAT.deliver(sender, rendered, mass(), RecordingPace())
        with pytest.raises(ChannelDown, match=r"wechat: .*40125"):
            await WECHAT.deliver(sender, rendered, direct(), RecordingPace())
    finally:
        await sender.close()


async def test_an_unreachable_api_is_a_retry(rendered: Rendered) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = WeChatSettings(
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_api_url=f"http://127.0.0.1:{port}",
        wechat_thumb_media_id=THUMB,
    )
    sender = await WECHAT.open_sender(settings)
    try:
        outcome = await WECHAT.deliver(sender, rendered, mass(), RecordingPace())
    finally:
        await sender.close()
    assert outcome.pushed.status == PushStatus.RETRY
    assert outcome.parts_done == 0
    assert outcome.message_id is None


# --- customer-service texts -----------------------------------------------------------------------------


async def test_a_direct_delivery_is_one_text(
    fake_wechat: FakeWeChatApi, outbox: WeChatOutbox, rendered: Rendered
) -> None:
    pace = RecordingPace()
    outcome = await WECHAT.deliver(outbox, rendered, direct(), pace)
    assert outcome.pushed.status == PushStatus.SENT
    assert outcome.parts_done == 1
    assert fake_wechat.texts_to(OPENID) == [payload_of(rendered).text]
    assert pace.slots == 1
    assert drafts(fake_wechat) == []


async def test_a_follower_outside_the_window_is_skipped(
    fake_wechat: FakeWeChatApi, outbox: WeChatOutbox, rendered: Rendered
) -> None:
    fake_wechat.window_closed(OPENID)
    outcome = await WECHAT.deliver(outbox, rendered, direct(), RecordingPace())
    assert outcome.pushed.status == PushStatus.SKIPPED
    assert outcome.parts_done == 0
    assert fake_wechat.texts_to(OPENID) == []


async def test_an_unknown_openid_is_blocked(outbox: WeChatOutbox, rendered: Rendered) -> None:
    outcome = await WECHAT.deliver(outbox, rendered, direct("not-an-openid"), RecordingPace())
    assert outcome.pushed.status == PushStatus.BLOCKED
    assert outcome.parts_done == 0
