"""A delivery's progress is in the database before its next part goes out, and a stopping worker hands back
what it could not finish: the two things that bound what a killed or stopped worker repeats."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from bot.broadcast.runtime import open_worker
from bot.broadcast.worker import HANDED_BACK
from storage.broadcasts import DeliveryState, StartReport
from storage.tables import DeliveryRow, core_table
from tests.bot.broadcast.conftest import World, chat_ids
from tests.bot.broadcast.test_worker import _start
from tests.fakes.faults import FaultPlan

CHAT = chat_ids(1)[0]


async def _delivery_row(world: World, report: StartReport) -> dict[str, object]:
    d = core_table(DeliveryRow)
    async with world.db.transaction() as connection:
        row = (await connection.execute(select(d).where(d.c.broadcast_id == report.broadcast.id))).one()
    return dict(row._mapping)


async def _until_claimed(world: World, report: StartReport) -> None:
    deadline = time.monotonic() + 10
    while (await _delivery_row(world, report))["state"] != DeliveryState.SENDING.value:
        assert time.monotonic() < deadline, "the worker never claimed the delivery"
        await asyncio.sleep(0.01)


async def test_the_next_part_waits_until_the_last_one_is_recorded(world: World) -> None:
    """With the ledger locked (another transaction holds the delivery's row), the worker sends at most the
    one part after the recorded ones; once the lock goes, the rest follows, each part once."""
    await world.add(telegram=1)
    report = await _start(world, "telegram")
    d = core_table(DeliveryRow)
    async with open_worker(world.settings, world.db, name="test-worker") as parts:
        running = asyncio.create_task(parts.worker.run(asyncio.Event(), until_idle=True))
        await _until_claimed(world, report)
        async with world.db.transaction("write") as connection:
            locked = select(d.c.parts_done).where(d.c.broadcast_id == report.broadcast.id).with_for_update()
            recorded = (await connection.execute(locked)).scalar_one()
            await asyncio.sleep(1.5)  # parts are not paced (rate_limits off): all would be out by now
            held = len(world.telegram.sent_to(CHAT))
        await asyncio.wait_for(running, 30)
    texts = [params["text"] for params in world.telegram.sent_to(CHAT)]
    assert len(texts) >= 3
    assert held == recorded + 1, f"{held} parts out with {recorded} recorded while the ledger was locked"
    assert len(set(texts)) == len(texts)
    assert (await _delivery_row(world, report))["state"] == DeliveryState.SENT.value


async def test_a_stopping_worker_hands_back_what_it_cannot_finish_in_time(world: World) -> None:
    """Telegram answers after 30 s; the worker is told to stop with 0.3 s to finish: it returns at once
    and the delivery is pending again where it got to, for the next worker, which sends the rest."""
    await world.add(telegram=1)
    report = await _start(world, "telegram")
    world.telegram.faults(FaultPlan(seed=1, rates={"slow": 1.0}, slow_seconds=30.0))
    stop = asyncio.Event()
    settings = world.with_settings(worker_stop_seconds=0.3)
    async with open_worker(settings, world.db, name="test-worker") as parts:
        running = asyncio.create_task(parts.worker.run(stop))
        await _until_claimed(world, report)
        for _ in range(1000):  # until the first part is stored (its answer is 30 s away)
            if world.telegram.sent_to(CHAT):
                break
            await asyncio.sleep(0.01)
        began = time.monotonic()
        stop.set()
        await asyncio.wait_for(running, 10)
        took = time.monotonic() - began
    row = await _delivery_row(world, report)
    assert took < 3, f"the worker took {took:.1f} s to stop"
    assert row["state"] == DeliveryState.PENDING.value
    assert row["last_error"] == HANDED_BACK
    assert row["parts_done"] == 0
    world.telegram.faults(None)
    await world.run_worker()
    texts = [params["text"] for params in world.telegram.sent_to(CHAT)]
    # The part that was in flight at the stop arrived (late) and is sent again: the one repeat allowed.
    assert len(texts) == len(set(texts)) + 1
    assert texts[0] == texts[1]
    assert (await _delivery_row(world, report))["state"] == DeliveryState.SENT.value
