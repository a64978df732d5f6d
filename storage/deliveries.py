"""The delivery ledger as a queue: workers claim pending rows, record what happened, and take over the
rows of workers that died.

A claim moves rows pending -> sending with the worker's name and a lease. On PostgreSQL the claim is
`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`, so any number of workers on any number of
machines take disjoint rows without waiting for each other; on SQLite the write transaction (BEGIN
IMMEDIATE) serialises claims, which is right for its single worker. A live worker renews its leases; rows
whose lease ran out go back to pending (`reclaim_expired`) and another worker sends them, from the part
they had reached (`parts_done`).

Results are written with a guard `worker = me AND state = 'sending'`: a worker that lost its lease (it
stalled past the timeout and its rows were taken over) cannot overwrite what the new owner records.
Lease times come from the workers' clocks; machines sharing a database are assumed to keep NTP time.

A FAILED result whose subscriber the platform refused (BLOCKED, BOUNCED) records why in the delivery's
`outcome`, in the same statement as the state: the broadcast's figures (storage/broadcast_stats.py) tell
blocked and bounced from other failures by that column, never by parsing last_error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, case, select, update

from storage.broadcasts import BroadcastState, DeliveryKind, DeliveryState, as_utc
from storage.database import Database
from storage.subscribers import SubscriberStatus
from storage.tables import BroadcastRow, DeliveryRow, SubscriberRow, core_table


class DeliveryOutcome(StrEnum):
    """Why a FAILED delivery failed, when it was the subscriber the platform refused (delivery.outcome)."""

    BLOCKED = "blocked"  # the platform refuses this recipient for good (bot blocked, chat gone)
    BOUNCED = "bounced"  # the mail server refused the recipient


# What a result says about its subscriber -> the failed delivery's outcome.
_OUTCOMES = {
    SubscriberStatus.BLOCKED: DeliveryOutcome.BLOCKED,
    SubscriberStatus.BOUNCED: DeliveryOutcome.BOUNCED,
}


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery a worker now owns until its lease runs out."""

    id: int
    broadcast_id: int
    issue_date: dt.date
    channel: str
    kind: DeliveryKind
    subscriber_id: int | None
    address: str | None  # None for a MASS delivery
    parts_done: int
    attempts: int  # including this one
    message_id: str | None
    address_key: str | None = None  # what a signed unsubscribe link names (with id and channel)
    secret: str | None = None  # the credential kept with the address (a Feishu robot's signing secret)
    # The subscriber's topics when claimed: the payload is rendered once per distinct set, with the
    # items about them first (bot/broadcast/payloads.py).
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Result:
    """What became of a claimed delivery (or how far it got: state SENDING with parts_done)."""

    id: int
    state: DeliveryState
    parts_done: int
    message_id: str | None = None
    error: str | None = None
    uncertain: bool = False
    retry_at: dt.datetime | None = None  # for PENDING: when to try again
    subscriber_id: int | None = None
    # What this result says about the subscriber: BLOCKED (the platform refuses them) or BOUNCED (a hard
    # bounce, counted; they become BOUNCED at the configured number).
    subscriber: SubscriberStatus | None = None

    @property
    def outcome(self) -> DeliveryOutcome | None:
        """delivery.outcome: set by a FAILED result that refuses the subscriber, None for any other."""
        if self.state != DeliveryState.FAILED or self.subscriber is None:
            return None
        return _OUTCOMES.get(self.subscriber)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DeliveryLedger:
    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], dt.datetime] = _utc_now,
        bounce_limit: int = 1,
    ) -> None:
        self._database = database
        self._clock = clock
        self._bounce_limit = max(1, bounce_limit)

    async def claim(
        self, worker: str, channels: Sequence[str], limit: int, lease_seconds: float
    ) -> list[Claim]:
        """Up to `limit` due deliveries of running broadcasts on `channels`, now SENDING for `worker`.

        Claimed per (broadcast, channel), each one range of the claim index (broadcast, channel, state, id)
        read in id order, so a claim costs the same at the end of a million-row broadcast as at its start;
        one query over all of them in id order walked the rows already sent first (0.5 s a claim halfway
        through a million). Each pair gets its share of `limit` first, so no channel starves another, and
        what is left goes to the pairs that have more.
        """
        if limit <= 0 or not channels:
            return []
        b, s = core_table(BroadcastRow), core_table(SubscriberRow)
        now = self._clock()
        async with self._database.transaction("write") as connection:
            runnable = (
                await connection.execute(
                    select(b.c.id, b.c.issue_date)
                    .where(b.c.state == BroadcastState.RUNNING.value, b.c.start_at <= now)
                    .order_by(b.c.id)
                )
            ).all()
            dates = {row.id: row.issue_date for row in runnable}
            pairs = [(row.id, channel) for row in runnable for channel in dict.fromkeys(channels)]
            claimed: list[Any] = []
            share = max(1, limit // len(pairs)) if pairs else 0
            for first_pass in (True, False):
                more = []
                for broadcast_id, channel in pairs:
                    want = limit - len(claimed)
                    if first_pass:
                        want = min(want, share)
                    if want <= 0:
                        break
                    statement = self._claim_statement(worker, broadcast_id, channel, want, now, lease_seconds)
                    rows = (await connection.execute(statement)).all()
                    claimed += rows
                    if len(rows) == want:
                        more.append((broadcast_id, channel))
                pairs = more
                if len(claimed) >= limit or not pairs:
                    break
            if not claimed:
                return []
            subscriber_ids = [row.subscriber_id for row in claimed if row.subscriber_id is not None]
            addresses: dict[int, Any] = {}
            if subscriber_ids:
                found = await connection.execute(
                    select(s.c.id, s.c.address, s.c.address_key, s.c.secret, s.c.topics).where(
                        s.c.id.in_(subscriber_ids)
                    )
                )
                addresses = {row.id: row for row in found}
        claims = [
            Claim(
                id=row.id,
                broadcast_id=row.broadcast_id,
                issue_date=dates[row.broadcast_id],
                channel=row.channel,
                kind=DeliveryKind(row.kind),
                subscriber_id=row.subscriber_id,
                address=_of(addresses.get(row.subscriber_id), "address"),
                parts_done=row.parts_done,
                attempts=row.attempts,
                message_id=row.message_id,
                address_key=_of(addresses.get(row.subscriber_id), "address_key"),
                secret=_of(addresses.get(row.subscriber_id), "secret"),
                topics=_topics_of(addresses.get(row.subscriber_id)),
            )
            for row in claimed
        ]
        claims.sort(key=lambda claim: claim.id)
        return claims

    def _claim_statement(
        self,
        worker: str,
        broadcast_id: int,
        channel: str,
        limit: int,
        now: dt.datetime,
        lease_seconds: float,
    ) -> Any:
        d = core_table(DeliveryRow)
        due = (
            select(d.c.id)
            .where(
                d.c.broadcast_id == broadcast_id,
                d.c.channel == channel,
                d.c.state == DeliveryState.PENDING.value,
                d.c.next_attempt_at <= now,
            )
            .order_by(d.c.id)
            .limit(limit)
        )
        if self._database.backend == "postgresql":
            due = due.with_for_update(skip_locked=True)
        return (
            update(d)
            .where(d.c.id.in_(due.scalar_subquery()))
            .values(
                state=DeliveryState.SENDING.value,
                worker=worker,
                lease_until=now + dt.timedelta(seconds=lease_seconds),
                attempts=d.c.attempts + 1,
            )
            .returning(
                d.c.id,
                d.c.broadcast_id,
                d.c.channel,
                d.c.kind,
                d.c.subscriber_id,
                d.c.parts_done,
                d.c.attempts,
                d.c.message_id,
            )
        )

    async def record(self, worker: str, results: Sequence[Result], lease_seconds: float) -> None:
        """Write results in one transaction. A SENDING result is progress (its lease is renewed)."""
        if not results:
            return
        d, s = core_table(DeliveryRow), core_table(SubscriberRow)
        now = self._clock()
        lease = now + dt.timedelta(seconds=lease_seconds)
        # The last word on each delivery wins: progress followed by the outcome in one batch.
        latest = {result.id: result for result in results}
        # Rows are updated (and locked) in id order, as renew and reclaim_expired lock them: transactions
        # that lock some of the same rows in different orders deadlock.
        latest = dict(sorted(latest.items()))
        params = [
            {
                "b_id": result.id,
                "b_state": result.state.value,
                "b_parts": result.parts_done,
                "b_message_id": None if result.message_id is None else result.message_id[:512],
                "b_error": None if result.error is None else result.error[:1000],
                "b_uncertain": result.uncertain,
                "b_next": result.retry_at or now,
                "b_lease": lease if result.state == DeliveryState.SENDING else None,
                "b_sent_at": now if result.state == DeliveryState.SENT else None,
                "b_outcome": None if result.outcome is None else result.outcome.value,
            }
            for result in latest.values()
        ]
        statement = (
            update(d)
            .where(
                d.c.id == bindparam("b_id"),
                d.c.worker == worker,
                d.c.state == DeliveryState.SENDING.value,
            )
            .values(
                state=bindparam("b_state"),
                parts_done=bindparam("b_parts"),
                message_id=bindparam("b_message_id"),
                last_error=bindparam("b_error"),
                uncertain=d.c.uncertain | bindparam("b_uncertain"),
                next_attempt_at=bindparam("b_next"),
                lease_until=bindparam("b_lease"),
                sent_at=bindparam("b_sent_at"),
                outcome=bindparam("b_outcome"),
            )
        )
        blocked = [
            {"b_sid": r.subscriber_id}
            for r in latest.values()
            if r.subscriber == SubscriberStatus.BLOCKED and r.subscriber_id is not None
        ]
        bounced = [
            {"b_sid": r.subscriber_id}
            for r in latest.values()
            if r.subscriber == SubscriberStatus.BOUNCED and r.subscriber_id is not None
        ]
        async with self._database.transaction("write") as connection:
            await connection.execute(statement, params)
            if blocked:
                await connection.execute(
                    update(s)
                    .where(s.c.id == bindparam("b_sid"), s.c.status == SubscriberStatus.ACTIVE.value)
                    .values(status=SubscriberStatus.BLOCKED.value, left_at=now),
                    blocked,
                )
            if bounced:
                reached = s.c.bounces + 1 >= self._bounce_limit
                await connection.execute(
                    update(s)
                    .where(s.c.id == bindparam("b_sid"))
                    .values(
                        bounces=s.c.bounces + 1,
                        status=case(
                            (
                                reached & (s.c.status == SubscriberStatus.ACTIVE.value),
                                SubscriberStatus.BOUNCED.value,
                            ),
                            else_=s.c.status,
                        ),
                        left_at=case(
                            (reached & (s.c.status == SubscriberStatus.ACTIVE.value), now), else_=s.c.left_at
                        ),
                    ),
                    bounced,
                )

    async def renew(self, worker: str, ids: Sequence[int], lease_seconds: float) -> None:
        """Extend the leases of the deliveries `worker` is still working on."""
        if not ids:
            return
        d = core_table(DeliveryRow)
        until = self._clock() + dt.timedelta(seconds=lease_seconds)
        mine = select(d.c.id).where(
            d.c.id.in_(list(ids)), d.c.worker == worker, d.c.state == DeliveryState.SENDING.value
        )
        if self._database.backend == "postgresql":
            # A row locked now is being written by this worker's recorder (which sets its lease) or taken
            # back by another worker: skip it rather than wait (and deadlock with the recorder).
            mine = mine.order_by(d.c.id).with_for_update(skip_locked=True)
        async with self._database.transaction("write") as connection:
            await connection.execute(
                update(d).where(d.c.id.in_(mine.scalar_subquery())).values(lease_until=until)
            )

    async def release(self, worker: str, ids: Sequence[int]) -> None:
        """Hand back claimed deliveries that were never started (a worker stopping): pending again, and
        the claim's attempt does not count."""
        if not ids:
            return
        d = core_table(DeliveryRow)
        async with self._database.transaction("write") as connection:
            await connection.execute(
                update(d)
                .where(d.c.id.in_(list(ids)), d.c.worker == worker, d.c.state == DeliveryState.SENDING.value)
                .values(state=DeliveryState.PENDING.value, lease_until=None, attempts=d.c.attempts - 1)
            )

    async def reclaim_expired(self) -> int:
        """Deliveries whose worker's lease ran out (it died or stalled) become pending again."""
        d = core_table(DeliveryRow)
        now = self._clock()
        expired = select(d.c.id).where(d.c.state == DeliveryState.SENDING.value, d.c.lease_until < now)
        if self._database.backend == "postgresql":
            # A row locked now is being written (its worker is alive after all) or taken back by another
            # worker: skip it rather than wait, which could deadlock with a recorder's batch.
            expired = expired.order_by(d.c.id).with_for_update(skip_locked=True)
        async with self._database.transaction("write") as connection:
            result = await connection.execute(
                update(d)
                .where(
                    d.c.id.in_(expired.scalar_subquery()),
                    d.c.state == DeliveryState.SENDING.value,
                    d.c.lease_until < now,
                )
                .values(state=DeliveryState.PENDING.value, lease_until=None, next_attempt_at=now)
            )
            return int(result.rowcount)

    async def running_broadcasts(self) -> list[int]:
        """Ids of running broadcasts whose start time has come (finish candidates)."""
        b = core_table(BroadcastRow)
        now = self._clock()
        async with self._database.transaction() as connection:
            rows = await connection.execute(
                select(b.c.id).where(b.c.state == BroadcastState.RUNNING.value, b.c.start_at <= now)
            )
            return list(rows.scalars())

    async def deliveries(self, broadcast_id: int) -> list[dict[str, Any]]:
        """Every delivery row of a broadcast, for tests and exports (not for a million rows)."""
        d = core_table(DeliveryRow)
        async with self._database.transaction() as connection:
            rows = await connection.execute(
                select(d).where(d.c.broadcast_id == broadcast_id).order_by(d.c.id)
            )
            result = []
            for row in rows.mappings():
                record = dict(row)
                for key in ("next_attempt_at", "lease_until", "sent_at"):
                    if record[key] is not None:
                        record[key] = as_utc(record[key])
                result.append(record)
            return result


def _topics_of(subscriber: Any) -> tuple[str, ...]:
    return () if subscriber is None else tuple(subscriber.topics or ())


def _of(subscriber: Any, column: str) -> str | None:
    return None if subscriber is None else getattr(subscriber, column)
