"""RobotPacer: each bot's slots stay within its per-second and per-minute limits in every window,
concurrent pushes to one bot queue up, bots do not hold each other back, and memory stays bounded.

Most tests run the pacer on a clock they move themselves (its `sleep` advances it), so nothing depends
on how fast the machine is; the last one paces real pushes to the fake server with short windows."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from channels.base import PushStatus
from channels.feishu import MARGIN_SECONDS, PUSHES_PER_MINUTE, PUSHES_PER_SECOND, RobotPacer, robot_pacer
from channels.feishu.transport import FeishuSender
from tests.fakes.feishu_api import OTHER_TOKEN, TOKEN, FakeFeishu, RateLimit
from tests.fakes.robot_api import VirtualClock


def pacer(clock: VirtualClock, **options: float) -> RobotPacer:
    settings: dict[str, float] = {
        "per_second": 2,
        "per_minute": 3,
        "second": 1.0,
        "minute": 10.0,
        "margin": 0.0,
    }
    settings |= options
    windows = [
        (int(settings["per_second"]), settings["second"]),
        (int(settings["per_minute"]), settings["minute"]),
    ]
    return RobotPacer(windows, margin=settings["margin"], clock=clock, sleep=clock.sleep)


def test_the_documented_limits() -> None:
    assert (PUSHES_PER_SECOND, PUSHES_PER_MINUTE) == (5, 100)
    default = robot_pacer()
    assert (default.windows, default.margin) == (((5, 1.0), (100, 60.0)), MARGIN_SECONDS)


def test_slots_follow_both_windows() -> None:
    clock = VirtualClock()
    paced = pacer(clock)
    delays = [paced.reserve(TOKEN) for _ in range(7)]
    # 2 a second, 3 every 10 s: two now, the third a second later, the next three 10 s after the first ones.
    assert delays == [0.0, 0.0, 1.0, 10.0, 10.0, 11.0, 20.0]


async def test_wait_sleeps_until_the_slot() -> None:
    clock = VirtualClock()
    paced = pacer(clock)
    sent = []
    for _ in range(4):
        await paced.wait(TOKEN)
        sent.append(clock.now - 1000.0)
    assert sent == [0.0, 0.0, 1.0, 10.0]
    assert clock.slept == [1.0, 9.0]


def test_the_margin_is_kept_after_every_window() -> None:
    clock = VirtualClock()
    paced = pacer(clock, margin=0.25)
    assert [paced.reserve(TOKEN) for _ in range(4)] == [0.0, 0.0, 1.25, 10.25]


def within_limits(times: list[float], per_second: int, per_minute: int, second: float, minute: float) -> bool:
    times = sorted(times)
    for start in times:
        if sum(start <= other < start + second for other in times) > per_second:
            return False
        if sum(start <= other < start + minute for other in times) > per_minute:
            return False
    return True


@pytest.mark.parametrize("seed", range(5))
def test_any_arrival_pattern_stays_within_the_limits(seed: int) -> None:
    generator = random.Random(seed)
    clock = VirtualClock()
    paced = pacer(clock, per_second=5, per_minute=20, second=1.0, minute=12.0)
    slots: dict[str, list[float]] = {TOKEN: [], OTHER_TOKEN: []}
    for _ in range(200):
        clock.now += generator.choice([0.0, 0.0, 0.01, 0.3, 2.0])
        token = generator.choice([TOKEN, OTHER_TOKEN])
        slots[token].append(clock.now + paced.reserve(token))
    for times in slots.values():
        assert within_limits(times, 5, 20, 1.0, 12.0)
        assert times == sorted(times)


def test_bots_do_not_wait_for_each_other() -> None:
    clock = VirtualClock()
    paced = pacer(clock)
    assert [paced.reserve(TOKEN) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert [paced.reserve(OTHER_TOKEN) for _ in range(2)] == [0.0, 0.0]


async def test_concurrent_pushes_to_one_bot_take_distinct_slots() -> None:
    clock = VirtualClock()
    paced = pacer(clock)
    woke: list[float] = []

    async def push() -> None:
        # Reserve at the same instant, as concurrent tasks do; sleep in real (zero) time, note the slot.
        delay = paced.reserve(TOKEN)
        await asyncio.sleep(0)
        woke.append(delay)

    await asyncio.gather(*(push() for _ in range(5)))
    assert sorted(woke) == [0.0, 0.0, 1.0, 10.0, 10.0]


def test_a_hold_delays_only_that_bot() -> None:
    clock = VirtualClock()
    paced = pacer(clock)
    paced.hold(TOKEN, 30.0)
    assert paced.reserve(TOKEN) == 30.0
    assert paced.reserve(OTHER_TOKEN) == 0.0
    paced.hold(OTHER_TOKEN, 0.0)  # nothing to hold
    assert paced.reserve(OTHER_TOKEN) == 0.0


def test_idle_bots_are_forgotten() -> None:
    clock = VirtualClock()
    paced = pacer(clock, per_second=5, per_minute=100, second=1.0, minute=60.0)
    peak = 0
    for number in itertools.count():
        if number == 20_000:
            break
        clock.now += 0.1  # ten new bots a second, each pushed to once
        paced.reserve(f"robot-{number:08d}")
        peak = max(peak, len(paced))
    # 600 bots were pushed to within the last minute; the sweep keeps about twice that at most.
    assert 600 <= peak <= 1300
    clock.now += 3600
    for _ in range(1000):
        paced.reserve(TOKEN)
        clock.now += 120  # far apart: no other bot is active any more
    assert len(paced) <= 2


def test_a_bot_keeps_at_most_a_minutes_worth_of_slots() -> None:
    clock = VirtualClock()
    paced = pacer(clock, per_second=5, per_minute=100)
    for _ in range(10_000):
        paced.reserve(TOKEN)
    assert paced.slots(TOKEN) == 100


@pytest.mark.parametrize(
    "options",
    [
        {"per_second": 0},
        {"per_minute": 0},
        {"second": 0.0},
        {"minute": -1.0},
        {"margin": -1.0},
    ],
)
def test_nonsense_limits_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"window|margin"):
        pacer(VirtualClock(), **options)


async def test_paced_pushes_are_never_throttled_by_the_platform(fake_feishu: FakeFeishu) -> None:
    """Short windows on both sides: the fake answers 9499 "too many request" beyond 2 per 0.2 s or 4 per
    second; the pacer, with the same limits, gets all six through; without it, the fake refuses some."""
    limits = RateLimit(per_second=2, per_minute=4, second=0.2, minute=1.0)
    fake_feishu.limit_rate(limits)
    fake_feishu.add_robot(TOKEN)
    fake_feishu.add_robot(OTHER_TOKEN)
    sender = FeishuSender(fake_feishu.url)
    paced = RobotPacer([(2, 0.2), (4, 1.0)], margin=0.1)
    body = {"msg_type": "text", "content": {"text": "简报"}}
    try:
        unpaced = [(await sender.push(OTHER_TOKEN, body)).status for _ in range(6)]
        assert PushStatus.RETRY in unpaced
        assert fake_feishu.throttled > 0
        throttled = fake_feishu.throttled

        async def push() -> PushStatus:
            await paced.wait(TOKEN)
            return (await sender.push(TOKEN, body)).status

        results = await asyncio.gather(*(push() for _ in range(6)))
    finally:
        await sender.close()
    assert results == [PushStatus.SENT] * 6
    assert fake_feishu.throttled == throttled
    assert len(fake_feishu.messages(TOKEN)) == 6
