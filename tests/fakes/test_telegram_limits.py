"""The fake Bot API's flood limits (limit_rate), its speed switches and its /_fake routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from telegram import Bot
from telegram.error import RetryAfter

from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram
from tests.fakes.telegram_rules import FloodControl


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with running_fake_telegram() as fake:
        yield fake


async def send(
    session: aiohttp.ClientSession, fake: FakeTelegram, chat_id: int, text: str = "<b>简报</b>", **extra: Any
) -> tuple[int, dict[str, Any]]:
    payload = {"chat_id": chat_id, "text": text, "parse_mode": "HTML", **extra}
    async with session.post(f"{fake.url}/bot{TOKEN}/sendMessage", json=payload) as response:
        return response.status, await response.json()


class Clock:
    """A clock the test moves by hand, so the window's edges are exact and nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_31_quick_sends_get_exactly_one_429(session: aiohttp.ClientSession, fake: FakeTelegram) -> None:
    fake.limit_rate()
    answers = await asyncio.gather(*(send(session, fake, chat_id) for chat_id in range(1, 32)))
    times = fake.accepted_times()
    assert times[-1] - times[0] < 1.0, "the sends were not quick enough for this test to mean anything"
    refused = [body for status, body in answers if status != 200]
    assert len(refused) == 1
    assert refused[0]["error_code"] == 429
    retry_after = refused[0]["parameters"]["retry_after"]
    assert isinstance(retry_after, int)
    assert retry_after >= 1
    assert refused[0]["description"] == f"Too Many Requests: retry after {retry_after}"
    assert fake.throttled == 1
    assert len(times) == fake.accepted_count == 30


async def test_a_second_message_to_a_chat_within_a_second_is_refused(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    fake.limit_rate()
    assert (await send(session, fake, 7))[0] == 200
    status, body = await send(session, fake, 7, "<i>again</i>")
    assert (status, body["parameters"]) == (429, {"retry_after": 1})
    assert (await send(session, fake, 8))[0] == 200  # other chats are not held up
    assert fake.delivered() == {(7, "<b>简报</b>"): 1, (8, "<b>简报</b>"): 1}


async def test_the_window_slides_and_retry_after_is_the_wait_rounded_up(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    clock = fake.clock = Clock()
    fake.limit_rate(per_second=3, per_chat_seconds=2.5)
    for chat_id in (1, 2, 3):
        assert (await send(session, fake, chat_id))[0] == 200
        clock.now += 0.1
    clock.now = 1000.5  # three accepted in the last second (at 1000.0, .1, .2): the fourth waits 0.5 s
    assert (await send(session, fake, 4))[1]["parameters"] == {"retry_after": 1}
    clock.now = 1001.0  # the first has left the window (it holds (now - 1 s, now])
    assert (await send(session, fake, 4))[0] == 200
    clock.now = 1001.05  # full again: the oldest (1000.1) leaves at 1001.1
    assert (await send(session, fake, 5))[1]["parameters"] == {"retry_after": 1}
    clock.now = 1001.2  # room in the window, but chat 1 had a message 1.2 s ago: 1.3 s more
    assert (await send(session, fake, 1))[1]["parameters"] == {"retry_after": 2}
    assert fake.throttled == 3
    assert fake.accepted_times() == pytest.approx([1000.0, 1000.1, 1000.2, 1001.0])


def test_flood_control_counts_only_what_it_accepted() -> None:
    flood = FloodControl(per_second=2, per_chat_seconds=0)
    assert flood.retry_after(1, 0.0) is None
    flood.accept(1, 0.0)
    assert flood.retry_after(2, 0.5) is None
    flood.accept(2, 0.5)
    for _ in range(5):  # refused ones do not fill the window
        assert flood.retry_after(3, 0.9) == 1
    assert flood.retry_after(3, 1.0) is None
    with pytest.raises(ValueError, match="per_second"):
        FloodControl(per_second=0.5)


async def test_python_telegram_bot_sees_retry_after(
    fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # else PTB 22 warns while building RetryAfter
    fake.limit_rate()
    async with Bot(TOKEN, base_url=f"{fake.url}/bot") as bot:
        await bot.send_message(5, "第一条")
        with pytest.raises(RetryAfter) as raised:
            await bot.send_message(5, "第二条")
    assert raised.value.retry_after == timedelta(seconds=1)


async def test_without_validation_any_text_goes_but_chats_are_still_checked(
    session: aiohttp.ClientSession,
) -> None:
    async with running_fake_telegram(validate_html=False, record=False) as fake:
        assert (await send(session, fake, 1, "<p>not Telegram HTML</p>"))[0] == 200
        fake.blocked.add(2)
        assert (await send(session, fake, 2))[0] == 403
        assert (await send(session, fake, 3, ""))[0] == 400
        async with session.post(
            f"{fake.url}/bot123:WRONG/sendMessage", json={"chat_id": 1, "text": "x"}
        ) as wrong:
            assert wrong.status == 401
        # record=False: counters and delivered() only.
        assert (fake.received, fake.accepted, fake.errors) == ([], [], [])
        assert fake.delivered() == {(1, "<p>not Telegram HTML</p>"): 1}
        assert (fake.accepted_count, fake.error_count) == (1, 3)


async def test_fake_routes_give_stats_and_block_chats(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    async with session.post(f"{fake.url}/_fake/block", json={"chat_ids": [11, 12]}) as response:
        assert (response.status, await response.json()) == (200, {"ok": True, "blocked": 2})
    async with session.post(f"{fake.url}/_fake/block", json={"chat_ids": ["11"]}) as response:
        assert response.status == 400
    for chat_id in (10, 11, 10):
        await send(session, fake, chat_id)
    async with session.get(f"{fake.url}/_fake/stats") as response:
        stats = await response.json()
    times = fake.accepted_times()
    assert stats == {
        "accepted": 2,
        "throttled": 0,
        "errors": 1,
        "duplicates": 1,
        "delivered": [[10, 2]],
        "first_accept": times[0],
        "last_accept": times[1],
        "injected": {},
        "blocked": 2,
    }
    assert fake.delivered() == {(10, "<b>简报</b>"): 2}
    assert [name for name, _ in fake.received] == ["sendMessage"] * 3  # /_fake calls are not Bot API calls
