"""Pacing pushes to each robot (a group's webhook: a WeCom key, a Feishu token) within its own limits.

Group robots are rate-limited per robot, in one or more sliding windows ("at most N messages in any S
seconds"); each channel names its windows and their sources in its own package (channels/wecom/pacing.py,
channels/feishu/pacing.py). The limits are per robot, so one group never holds the others back: each key
has its own slots.

`wait(key)` reserves the robot's next free slot and sleeps until it. Slots are reserved before sleeping,
so concurrent pushes to one robot queue up instead of all taking the same slot; the k-th slot is at least
a window (and a margin) after the (k - count)-th, in every window, which keeps any window's worth of
slots within its count (slots only move forward, so a robot's reserved times are in order). A robot
keeps at most the largest count of slot times, and a robot with no slot within the longest window (and
no hold) is forgotten: each call looks at the two robots looked at least recently, so memory stays
within about twice the robots pushed to within a window, at a constant cost per call.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from channels.base import PushResult, PushStatus
from channels.channel import Pace

# A window: at most `count` messages in any `seconds`.
Window = tuple[int, float]

# Robots looked at per call for forgetting: more than one, so that the remembered robots shrink back when
# pushes move on to other robots (one new robot per call, two looked at).
SWEEP_PER_CALL = 2


@dataclass
class _Robot:
    slots: deque[float] = field(default_factory=deque)  # reserved send times, oldest first
    held_until: float = 0.0


class RobotPacer:
    def __init__(
        self,
        windows: Sequence[Window],
        *,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`margin`: the platform counts arrivals, this counts departures; a request sent a window after
        another can arrive a little less than a window after it when the first was slower on the way."""
        if not windows or any(count < 1 or seconds <= 0 for count, seconds in windows) or margin < 0:
            raise ValueError("expected at least one window, each (count >= 1, seconds > 0), and margin >= 0")
        self.windows: tuple[Window, ...] = tuple((count, float(seconds)) for count, seconds in windows)
        self.margin = margin
        self._kept = max(count for count, _ in self.windows)  # only these many slots ever constrain
        self._longest = max(seconds for _, seconds in self.windows)
        self._clock, self._sleep = clock, sleep
        self._robots: OrderedDict[str, _Robot] = OrderedDict()  # least recently looked at first

    async def wait(self, key: str) -> None:
        """Until this robot may be sent the next message; the slot is taken on return."""
        delay = self.reserve(key)
        if delay > 0:
            await self._sleep(delay)

    def reserve(self, key: str) -> float:
        """Take this robot's next slot; how long from now until it (0 when it is now)."""
        now = self._clock()
        self._forget_idle(now)
        robot = self._look_at(key)
        slots = robot.slots
        while slots and slots[0] <= now - self._longest - self.margin:
            slots.popleft()  # out of every window for good: slots only move forward
        slot = max(now, robot.held_until)
        for count, seconds in self.windows:
            if len(slots) >= count:
                slot = max(slot, slots[-count] + seconds + self.margin)
        slots.append(slot)
        if len(slots) > self._kept:
            slots.popleft()
        return slot - now

    def hold(self, key: str, seconds: float) -> None:
        """No slot for this robot for `seconds` (the platform said it is over its limit)."""
        if seconds <= 0:
            return
        robot = self._look_at(key)
        robot.held_until = max(robot.held_until, self._clock() + seconds)

    def __len__(self) -> int:
        """Robots remembered now."""
        return len(self._robots)

    def slots(self, key: str) -> int:
        """Slot times remembered for this robot (0 for one not remembered)."""
        robot = self._robots.get(key)
        return len(robot.slots) if robot else 0

    def _look_at(self, key: str) -> _Robot:
        robot = self._robots.pop(key, None) or _Robot()
        self._robots[key] = robot  # most recently looked at: last
        return robot

    def _forget_idle(self, now: float) -> None:
        for _ in range(min(SWEEP_PER_CALL, len(self._robots))):
            key, robot = next(iter(self._robots.items()))
            last = robot.slots[-1] if robot.slots else float("-inf")
            if last > now - self._longest - self.margin or robot.held_until > now:
                self._robots.move_to_end(key)  # still active: looked at again after all the others
            else:
                del self._robots[key]


async def paced_push(
    pacer: RobotPacer, robot: str, pace: Pace, push: Callable[[], Awaitable[PushResult]]
) -> PushResult:
    """One push to a group robot, within the robot's own limit and the channel's shared rate. A robot told
    to wait (retry_after) is held alone: the other groups' robots go on."""
    await pacer.wait(robot)
    await pace.slot()
    pushed = await push()
    if pushed.status == PushStatus.RETRY and pushed.retry_after:
        pacer.hold(robot, pushed.retry_after)
    return pushed
