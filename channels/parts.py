"""Pushing a delivery's parts in order, from where it had got to: what every multi-message channel shares.

Each part's progress is recorded through `pace.reached` (awaited) before the next part goes out, so a
worker killed mid-delivery repeats at most the one part it had in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from channels.base import PushResult, PushStatus
from channels.channel import Delivery, Outcome, Pace

T = TypeVar("T")

MAYBE_LOST = "a part may not have arrived (timeout)"


async def push_parts(
    parts: Sequence[T], delivery: Delivery, pace: Pace, push: Callable[[T], Awaitable[PushResult]]
) -> Outcome:
    """Push `parts[delivery.parts_done:]` one by one with `push` (which waits for its own slots)."""
    part = delivery.parts_done
    ids = delivery.message_id.split(",") if delivery.message_id else []
    uncertain = False
    while part < len(parts):
        pushed = await push(parts[part])
        if pushed.status not in (PushStatus.SENT, PushStatus.UNCERTAIN):
            return Outcome(pushed, part, ",".join(ids) or None, uncertain)
        part += 1
        ids.append(pushed.message_id or "?")
        uncertain = uncertain or pushed.status == PushStatus.UNCERTAIN
        if part < len(parts):
            await pace.reached(part, ",".join(ids), uncertain=uncertain)
    done = PushResult(PushStatus.SENT, error=MAYBE_LOST if uncertain else None)
    return Outcome(done, part, ",".join(ids) or None, uncertain)
