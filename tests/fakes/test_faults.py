"""FaultPlan, and the faults the fake Bot API injects into sendMessage with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.faults import FaultPlan
from tests.fakes.telegram_api import TOKEN, FakeTelegram, running_fake_telegram

RATES = {"500": 0.05, "drop": 0.03, "slow": 0.03, "429": 0.03}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with running_fake_telegram() as fake:
        yield fake


async def send(
    session: aiohttp.ClientSession, fake: FakeTelegram, chat_id: int, text: str = "简报", **options: Any
) -> tuple[int, dict[str, Any]]:
    url = f"{fake.url}/bot{TOKEN}/sendMessage"
    async with session.post(url, json={"chat_id": chat_id, "text": text}, **options) as response:
        return response.status, await response.json()


def outcomes(plan: FaultPlan, keys: list[int], attempts: int = 3) -> dict[tuple[int, int], str | None]:
    return {(key, attempt): plan.draw(key) for attempt in range(attempts) for key in keys}


def test_a_seeded_plan_is_reproducible_whatever_the_order_of_keys() -> None:
    keys = list(range(200))
    first = outcomes(FaultPlan(seed=7, rates=RATES), keys)
    assert outcomes(FaultPlan(seed=7, rates=RATES), keys[::-1]) == first
    assert outcomes(FaultPlan(seed=7, rates=dict(reversed(RATES.items()))), keys) == first
    assert outcomes(FaultPlan(seed=8, rates=RATES), keys) != first
    drawn = Counter(fault for fault in first.values() if fault)
    assert set(drawn) == set(RATES)
    assert 0.08 < sum(drawn.values()) / len(first) < 0.22  # 0.14 expected of 600 draws


def test_max_per_key_caps_the_faults_one_key_gets() -> None:
    plan = FaultPlan(seed=1, rates={"500": 1.0}, max_per_key=2)
    assert [plan.draw("a") for _ in range(4)] == ["500", "500", None, None]
    assert plan.draw("b") == "500"
    assert plan.counts == {"500": 3}


def test_plans_are_checked() -> None:
    assert FaultPlan.parse("500=0.05, drop=0.03", seed=7).rates == {"500": 0.05, "drop": 0.03}
    with pytest.raises(ValueError, match="more than 1"):
        FaultPlan(rates={"500": 0.7, "drop": 0.4})
    with pytest.raises(ValueError, match="NAME=RATE"):
        FaultPlan.parse("500")
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan(rates={"timeout": 0.1}).check(["500", "drop"])


async def test_a_500_stores_nothing(session: aiohttp.ClientSession, fake: FakeTelegram) -> None:
    fake.faults(FaultPlan(rates={"500": 1.0}))
    assert await send(session, fake, 1) == (
        500,
        {"ok": False, "error_code": 500, "description": "Internal Server Error"},
    )
    assert fake.delivered() == Counter()
    assert fake.injected == [("500", 1)]


async def test_a_drop_closes_the_connection_without_an_answer(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    fake.faults(FaultPlan(rates={"drop": 1.0}))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(session, fake, 1)
    assert fake.delivered() == Counter()
    assert fake.sent_to(1) == []
    fake.faults(None)
    assert (await send(session, fake, 1))[0] == 200  # the fake itself is fine
    assert fake.injected == [("drop", 1)]


async def test_slow_delivers_and_then_answers_late(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    fake.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=0.3))
    started = time.monotonic()
    answer = asyncio.create_task(send(session, fake, 1))
    await asyncio.sleep(0.1)
    assert not answer.done()
    assert fake.delivered() == {(1, "简报"): 1}  # delivered before the answer left
    status, _ = await answer
    assert status == 200
    assert time.monotonic() - started >= 0.3
    # A client that gives up sooner sees a timeout for a message that was delivered all the same.
    with pytest.raises(TimeoutError):
        await send(session, fake, 2, timeout=aiohttp.ClientTimeout(total=0.1))
    assert fake.delivered()[(2, "简报")] == 1


async def test_an_injected_429_carries_the_plans_retry_after(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    fake.faults(FaultPlan(rates={"429": 1.0}, retry_after=4))
    status, body = await send(session, fake, 1)
    assert (status, body["parameters"]) == (429, {"retry_after": 4})
    assert fake.throttled == 0  # not the flood limits' doing


async def test_with_a_cap_retrying_gets_every_message_through_exactly_once(
    session: aiohttp.ClientSession, fake: FakeTelegram
) -> None:
    fake.faults(FaultPlan(seed=3, rates={"500": 0.3, "drop": 0.2, "429": 0.2}, max_per_key=3))
    for chat_id in range(1, 21):
        for _ in range(4):
            try:
                if (await send(session, fake, chat_id))[0] == 200:
                    break
            except aiohttp.ServerDisconnectedError:
                pass
    assert fake.delivered() == {(chat_id, "简报"): 1 for chat_id in range(1, 21)}
    assert 10 < len(fake.injected) <= 60
    assert fake.duplicates == 0


def test_a_fake_refuses_faults_it_cannot_play() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FakeTelegram().faults(FaultPlan(rates={"451": 0.1}))


async def test_a_sender_dying_mid_request_is_no_server_error(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    host, port = fake.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /bot{TOKEN}/sendMessage HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n".encode()
        + b'{"chat_id": 1, "te'
    )
    await writer.drain()
    await asyncio.sleep(0.05)  # the fake is reading the body now
    writer.transport.abort()
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.05)
    assert fake.received == []
    assert caplog.records == []
