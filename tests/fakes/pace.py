"""The worker's side of a delivery (channels.channel.Pace) for the channels' tests: no shared rate, every
call recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RecordingPace:
    """The worker's side of a delivery (channels.channel.Pace): no shared rate, every call recorded.

    `on_reached(parts_done)` runs inside `reached`, before the next part goes out: a test can note what
    the fake had by then, or change the fake between two parts."""

    on_reached: Callable[[int], None] | None = None
    slots: int = 0
    reached_calls: list[tuple[int, str | None, bool]] = field(default_factory=list)

    async def slot(self) -> None:
        self.slots += 1

    async def reached(self, parts_done: int, message_id: str | None, *, uncertain: bool = False) -> None:
        self.reached_calls.append((parts_done, message_id, uncertain))
        if self.on_reached is not None:
            self.on_reached(parts_done)
