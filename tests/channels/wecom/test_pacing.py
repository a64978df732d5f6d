"""RobotPacer: at most 20 messages in any 60 s per robot key, with bounded memory; and against the fake
WeCom server with its window shortened, a paced sender is never throttled where an unpaced one is."""

from __future__ import annotations

import asyncio

import pytest

from channels.base import PushStatus
from channels.wecom import (
    MARGIN_SECONDS,
    PUSHES_PER_MINUTE,
    WINDOW_SECONDS,
    WINDOWS,
    RobotPacer,
    markdown_body,
    robot_pacer,
)
from channels.wecom.transport import WeComSender
from tests.fakes.robot_api import VirtualClock
from tests.fakes.wecom_api import KEY, OTHER_KEY, PER_WINDOW, running_fake_wecom


def test_the_limit_is_the_documented_one() -> None:
    assert (PUSHES_PER_MINUTE, WINDOW_SECONDS) == (PER_WINDOW, 60.0) == (20, 60.0)
    paced = robot_pacer()
    assert (paced.windows, paced.margin) == (((20, 60.0),), MARGIN_SECONDS)


def test_reserved_slots_keep_every_window_within_the_limit() -> None:
    clock = VirtualClock()
    pacer = RobotPacer(WINDOWS, clock=clock, margin=0.5)
    delays = [pacer.reserve(KEY) for _ in range(45)]
    assert delays[:20] == [0.0] * 20
    assert delays[20:40] == [60.5] * 20
    assert delays[40:] == [121.0] * 5
    slots = sorted(clock.now + delay for delay in delays)
    for first, later in zip(slots, slots[20:], strict=False):
        assert later - first >= 60.0  # any 20 consecutive slots span more than a window
    assert pacer.reserve(OTHER_KEY) == 0.0, "each robot has its own window"


async def test_wait_sleeps_until_the_slot() -> None:
    clock = VirtualClock()
    pacer = RobotPacer([(3, 10.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    for _ in range(7):
        await pacer.wait(KEY)
    assert clock.slept == [10.0, 10.0]  # before the 4th and the 7th: nothing else sleeps
    assert clock.now == 1020.0  # 3 at 1000, 3 at 1010, 1 at 1020


async def test_hold_keeps_a_throttled_robot_back() -> None:
    clock = VirtualClock()
    pacer = RobotPacer(WINDOWS, margin=MARGIN_SECONDS, clock=clock, sleep=clock.sleep)
    pacer.hold(KEY, 60.0)
    await pacer.wait(KEY)
    await pacer.wait(OTHER_KEY)
    assert clock.slept == [60.0], "only the held robot waits"
    pacer.hold(KEY, 0.0)
    assert pacer.reserve(KEY) == 0.0


def test_idle_robots_are_forgotten() -> None:
    clock = VirtualClock()
    pacer = RobotPacer(WINDOWS, clock=clock, margin=0.0)
    for number in range(1000):
        pacer.reserve(f"robot-{number:04d}-key")
    assert len(pacer) == 1000
    clock.now += 61.0
    for _ in range(600):
        pacer.reserve(KEY)
        clock.now += 61.0 / 20  # this robot's own pace: never more than 20 a minute
    assert len(pacer) == 1, "a robot with no slot within the last window is dropped"


def test_memory_per_robot_is_bounded() -> None:
    clock = VirtualClock()
    pacer = RobotPacer(WINDOWS, margin=MARGIN_SECONDS, clock=clock)
    for _ in range(10_000):
        pacer.reserve(KEY)
    assert pacer.slots(KEY) == PUSHES_PER_MINUTE


@pytest.mark.parametrize("window", [(0, 60.0), (20, 0.0), (20, -1.0)])
def test_nonsense_limits_are_refused(window: tuple[int, float]) -> None:
    with pytest.raises(ValueError, match="window"):
        RobotPacer([window], margin=MARGIN_SECONDS)


# --- against the fake server, its window shortened ---------------------------------------------------

WINDOW = 0.3  # the fake's and the pacer's window: 20 per 0.3 s instead of per minute
# The pacer counts departures, the fake arrivals; a margin as long as the window absorbs any delay between
# them on a loaded machine, so the outcome does not depend on its speed (the exact arithmetic is tested
# above on virtual time).
MARGIN = 0.3


async def test_a_paced_robot_is_never_throttled() -> None:
    async with running_fake_wecom(KEY, OTHER_KEY) as fake:
        fake.limit_rate(PER_WINDOW, WINDOW)
        pacer = RobotPacer([(PER_WINDOW, WINDOW)], margin=MARGIN)
        sender = WeComSender(fake.url)
        try:

            async def push_all(key: str, count: int) -> list[PushStatus]:
                statuses = []
                for number in range(count):
                    await pacer.wait(key)
                    statuses.append((await sender.push(key, markdown_body(f"{key[:4]} {number}"))).status)
                return statuses

            first, second = await asyncio.gather(push_all(KEY, 45), push_all(OTHER_KEY, 25))
        finally:
            await sender.close()
    assert first == [PushStatus.SENT] * 45
    assert second == [PushStatus.SENT] * 25
    assert fake.throttled == 0
    assert fake.contents(KEY) == [f"{KEY[:4]} {number}" for number in range(45)]
    for key in (KEY, OTHER_KEY):
        times = fake.accepted_at[key]
        assert all(later - first >= WINDOW for first, later in zip(times, times[PER_WINDOW:], strict=False))


async def test_an_unpaced_robot_is_throttled_by_the_same_fake() -> None:
    async with running_fake_wecom(KEY) as fake:
        fake.limit_rate(PER_WINDOW, 60.0)
        sender = WeComSender(fake.url)
        try:
            statuses = [(await sender.push(KEY, markdown_body(str(n)))).status for n in range(25)]
        finally:
            await sender.close()
    assert statuses == [PushStatus.SENT] * 20 + [PushStatus.RETRY] * 5
    assert fake.throttled == 5
