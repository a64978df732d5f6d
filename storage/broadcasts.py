"""Broadcasts: an editor's "send this issue", and the delivery rows that starting one creates.

Starting a broadcast writes the broadcast row and one delivery row per (subscriber, channel) in one
transaction, so a broadcast either exists with its whole audience or not at all. Subscribers are read and
rows written in pages of START_PAGE by subscriber id: a million subscribers never sit in memory at once.
The unique key (broadcast, channel, subscriber) makes starting again a no-op for everyone already there;
only subscribers who joined since (or channels added since) get new rows.

Who gets a pending row and who a skipped one (topics that do not match, a closed 48 h window) is the
caller's rule, `Audience`; which rows a channel gets (one per subscriber, and/or one MASS row for a
platform that sends to all its followers itself) is the caller's rule too (`kinds`, a `Rows`): storage
stores, the application and its channels decide.

Counting an audience (`count_audience`, `preview`) does not walk the subscribers: `Audience` is made of a
last-seen cutoff per channel (a `Window`) and a rule on a subscriber's topics, so one SQL aggregate groups
the active subscribers by (channel, topics as stored) and counts those inside the window, and the rule
decides each group once, with the same `Audience.__call__` that `start` asks per subscriber (topic sets
are few). On PostgreSQL at 1,000,000 subscribers that is one parallel scan, 200-350 ms on 2 cores,
where walking them in pages through the rule took 8.5 s, most of it on the event loop.

A reader who paused (subscriber.paused_issues > 0, the email preference page) is storage's own rule, before
`Audience`: `start` gives them a skipped row (PAUSED) and counts their pause down by one in the same
transaction, whatever their topics or window, so a pause of N skips the next N issues; `count_audience`
counts them in its aggregate as skipped, without counting down.

`progress` is one scan of the broadcast's rows (counts per channel and state, the uncertain ones and the
sends of the last minute as FILTERed counts of the same scan). At 1,000,000 rows on 2 cores a parallel
scan took 120-230 ms of both cores (the three separate counts it replaced, about 285 ms; an index-only
scan of ix_delivery_claim, visibility map all set, about 180 ms: no cheaper, it is the whole index).
It runs on one core (PROGRESS_WORKERS): about 300 ms, but WeChat keyword replies at 200 a second kept
their p99 (4.8 ms alone, 4.8 ms with a count every 2 s) where a parallel count every 2 s raised it to
6.6-11 ms. Neither count is cheap enough to run per request for many watchers:
bot/broadcast/snapshots.py shares one count among them.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Text, and_, cast, false, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from content.errors import BadInput, Conflict, NotFound
from storage.database import Database
from storage.subscribers import SubscriberStatus
from storage.tables import NAME_LENGTH, BroadcastRow, DeliveryRow, SubscriberRow, core_table

# Subscribers read and delivery rows written per statement when a broadcast starts.
START_PAGE = 5000
# The sends a progress report's rate is measured over.
RATE_PERIOD = dt.timedelta(minutes=1)
# PostgreSQL's parallel workers a progress count may use besides its own backend.
PROGRESS_WORKERS = 0
# The skip reason of a reader who paused their subscription (see the module's docstring).
PAUSED = "paused by the reader"


class BroadcastState(StrEnum):
    RUNNING = "running"  # workers claim its deliveries once start_at has come
    PAUSED = "paused"  # nothing new is claimed; what is in flight finishes
    CANCELLED = "cancelled"  # pending deliveries became skipped
    DONE = "done"  # nothing pending or sending is left


class DeliveryState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"
    FAILED = "failed"  # permanently: blocked, bounced, refused content, out of attempts
    SKIPPED = "skipped"  # never sent: topics, 48 h window, cancelled


class DeliveryKind(StrEnum):
    DIRECT = "direct"  # one subscriber
    MASS = "mass"  # WeChat's mass send to every follower: no subscriber


UNFINISHED = (DeliveryState.PENDING, DeliveryState.SENDING)


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: int
    issue_date: dt.date
    channels: tuple[str, ...]
    state: BroadcastState
    options: dict[str, Any]
    start_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "date": self.issue_date.isoformat(),
            "channels": list(self.channels),
            "state": self.state.value,
            "options": dict(self.options),
            "start_at": self.start_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Recipient:
    """What an audience rule sees of a subscriber."""

    subscriber_id: int
    channel: str
    topics: tuple[str, ...]
    last_seen_at: dt.datetime | None


class Window(Protocol):
    """A channel's rule on when a subscriber last wrote to us (channels/channel.py `Window`): it `admits`
    exactly those whose last_seen_at is at or after `since`; the others are skipped with `reason`."""

    @property
    def since(self) -> dt.datetime: ...

    @property
    def reason(self) -> str: ...

    def admits(self, last_seen_at: dt.datetime | None) -> bool: ...


def every_topic(_topics: tuple[str, ...]) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Audience:
    """Who of the active subscribers gets the issue (a pending row), and why the others are skipped.

    Calling it decides one recipient: first their channel's `Window`, if it has one, then `topics`
    (their topics -> None, or why they are skipped). It looks at nothing else of a recipient, which is
    what lets `count_audience` count in SQL exactly what `start` decides per subscriber."""

    windows: Mapping[str, Window] = field(default_factory=dict)  # channel -> its last-seen cutoff
    topics: Callable[[tuple[str, ...]], str | None] = every_topic

    def __call__(self, recipient: Recipient) -> str | None:
        window = self.windows.get(recipient.channel)
        if window is not None and not window.admits(recipient.last_seen_at):
            return window.reason
        return self.topics(recipient.topics)


# channel, the broadcast's options -> (one row per subscriber, one MASS row)
Rows = Callable[[str, Mapping[str, Any]], tuple[bool, bool]]


def per_subscriber(_channel: str, _options: Mapping[str, Any]) -> tuple[bool, bool]:
    return True, False


everyone = Audience()


@dataclass
class AudienceCount:
    """What `start` would create on one channel now: pending rows, skipped rows by reason, a MASS row."""

    mass: bool = False
    pending: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows

    def add(self, reason: str | None, rows: int) -> None:
        if reason is None:
            self.pending += rows
        elif rows:
            self.skipped[reason] = self.skipped.get(reason, 0) + rows

    def to_dict(self) -> dict[str, int]:
        """`preview`'s shape: {"mass": 1} for a MASS row, "pending" and "skipped" when not zero."""
        counts = {"mass": 1} if self.mass else {}
        skipped = sum(self.skipped.values())
        return (
            counts
            | ({"pending": self.pending} if self.pending else {})
            | ({"skipped": skipped} if skipped else {})
        )


@dataclass(frozen=True, slots=True)
class StartReport:
    broadcast: Broadcast
    created: bool  # a new broadcast (False: it existed, and only new rows were added)
    pending: int  # delivery rows added as pending by this call
    skipped: int  # ... and as skipped


@dataclass
class Progress:
    """Counts of one broadcast's deliveries: channel -> state -> rows."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    uncertain: int = 0  # sent, but a timeout left it open whether the platform delivered it
    sent_last_minute: int = 0

    @property
    def total(self) -> int:
        return sum(sum(states.values()) for states in self.counts.values())

    def state_total(self, *states: str) -> int:
        return sum(counts.get(state, 0) for counts in self.counts.values() for state in states)

    @property
    def unfinished(self) -> int:
        return self.state_total(*UNFINISHED)

    @property
    def rate_per_second(self) -> float:
        return self.sent_last_minute / 60.0

    @property
    def eta_seconds(self) -> float | None:
        if not self.unfinished:
            return 0.0
        rate = self.rate_per_second
        return None if rate <= 0 else self.unfinished / rate

    def to_dict(self) -> dict[str, object]:
        eta = self.eta_seconds
        return {
            "counts": {channel: dict(states) for channel, states in sorted(self.counts.items())},
            "total": self.total,
            "unfinished": self.unfinished,
            "uncertain": self.uncertain,
            "rate_per_second": round(self.rate_per_second, 2),
            "eta_seconds": None if eta is None else round(eta, 1),
        }


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BroadcastStore:
    def __init__(self, database: Database, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._database = database
        self._clock = clock

    async def start(
        self,
        issue_date: dt.date,
        channels: Sequence[str],
        *,
        audience: Audience = everyone,
        kinds: Rows = per_subscriber,
        start_at: dt.datetime | None = None,
        options: dict[str, Any] | None = None,
        page: int = START_PAGE,
    ) -> StartReport:
        """Create the broadcast of `issue_date` on `channels` with its delivery rows, or add what is
        missing to the existing one. `kinds` says per channel, given the broadcast's options (merged with
        an existing broadcast's), whether it gets a DIRECT row per subscriber and/or one MASS row."""
        wanted = _checked_channels(channels)
        now = self._clock()
        options = dict(options or {})
        b = core_table(BroadcastRow)
        async with self._database.transaction("write") as connection:
            found = (
                await connection.execute(select(b).where(b.c.issue_date == issue_date).with_for_update())
            ).first()
            if found is None:
                values = {
                    "issue_date": issue_date,
                    "channels": list(wanted),
                    "state": BroadcastState.RUNNING.value,
                    "options": options,
                    "start_at": start_at or now,
                    "created_at": now,
                    "updated_at": now,
                }
                broadcast_id = (
                    await connection.execute(b.insert().values(**values).returning(b.c.id))
                ).scalar_one()
                before: tuple[str, ...] = ()
                merged_options = options
            else:
                existing = _broadcast(found)
                if existing.state == BroadcastState.CANCELLED:
                    raise Conflict(f"the broadcast of {issue_date} was cancelled; it cannot be started again")
                broadcast_id, before = existing.id, existing.channels
                merged_options = existing.options | options
                merged = tuple(dict.fromkeys(before + wanted))
                await connection.execute(
                    update(b)
                    .where(b.c.id == broadcast_id)
                    .values(channels=list(merged), options=merged_options, updated_at=now)
                )
            pending = skipped = 0
            plans = {channel: kinds(channel, merged_options) for channel in wanted}
            mass = [channel for channel in wanted if plans[channel][1] and channel not in before]
            if mass:
                await connection.execute(
                    self._insert_deliveries(),
                    [_row(broadcast_id, None, channel, DeliveryKind.MASS, None, now) for channel in mass],
                )
                pending += len(mass)
            direct = [channel for channel in wanted if plans[channel][0]]
            if direct:
                added = await self._add_recipients(connection, broadcast_id, direct, audience, now, page)
                pending += added[0]
                skipped += added[1]
            if found is not None and (pending or skipped):
                # New rows on a finished broadcast: it runs again for them.
                await connection.execute(
                    update(b)
                    .where(b.c.id == broadcast_id, b.c.state == BroadcastState.DONE.value)
                    .values(state=BroadcastState.RUNNING.value, finished_at=None, updated_at=now)
                )
            row = (await connection.execute(select(b).where(b.c.id == broadcast_id))).one()
        return StartReport(_broadcast(row), created=found is None, pending=pending, skipped=skipped)

    async def preview(
        self,
        channels: Sequence[str],
        *,
        audience: Audience = everyone,
        kinds: Rows = per_subscriber,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, int]]:
        """What `start` would create, without writing: channel -> {"pending": n, "skipped": n}, and
        {"mass": 1} for a channel's MASS row (zeros and channels with nothing left out)."""
        counts = await self.count_audience(channels, audience=audience, kinds=kinds, options=options)
        return {channel: count.to_dict() for channel, count in counts.items() if count.to_dict()}

    async def count_audience(
        self,
        channels: Sequence[str],
        *,
        audience: Audience = everyone,
        kinds: Rows = per_subscriber,
        options: Mapping[str, Any] | None = None,
    ) -> dict[str, AudienceCount]:
        """What `start` would create on each channel of a new broadcast now, with the skipped rows by
        reason: one aggregate over the active subscribers, grouped by (channel, topics), each group
        decided once by `audience` (see the module's docstring)."""
        wanted = _checked_channels(channels)
        plans = {channel: kinds(channel, options or {}) for channel in wanted}
        result = {channel: AudienceCount(mass=plans[channel][1]) for channel in wanted}
        direct = [channel for channel in wanted if plans[channel][0]]
        if not direct:
            return result
        s = core_table(SubscriberRow)
        # JSON has no equality on PostgreSQL: group by its text, and parse each distinct text once.
        topics = cast(s.c.topics, Text)
        paused = s.c.paused_issues > 0
        windows = {channel: audience.windows[channel] for channel in direct if channel in audience.windows}
        # Those inside their channel's window (on a channel without one, nobody needs counting).
        inside = or_(
            false(),
            *(
                and_(s.c.channel == channel, s.c.last_seen_at >= as_utc(window.since))
                for channel, window in windows.items()
            ),
        )
        statement = (
            select(
                s.c.channel,
                topics.label("topics"),
                func.count().label("rows"),
                func.count().filter(paused).label("paused"),
                func.count().filter(and_(inside, ~paused)).label("inside"),
            )
            .where(s.c.channel.in_(direct), s.c.status == SubscriberStatus.ACTIVE.value)
            .group_by(s.c.channel, topics)
        )
        async with self._database.transaction() as connection:
            groups = (await connection.execute(statement)).all()
        for group in groups:
            chosen = _topics(group.topics)
            window = windows.get(group.channel)
            result[group.channel].add(PAUSED, group.paused)
            playing = group.rows - group.paused
            # The group's members differ only in last_seen_at, and the rule sees that only through the
            # window: one recipient inside it (seen at its cutoff) and one outside (never seen) decide all.
            seen = (
                [(None, playing)]
                if window is None
                else [(window.since, group.inside), (None, playing - group.inside)]
            )
            for last_seen_at, rows in seen:
                if rows:
                    reason = audience(Recipient(0, group.channel, chosen, last_seen_at))
                    result[group.channel].add(reason, rows)
        return result

    async def get(self, broadcast_id: int) -> Broadcast:
        b = core_table(BroadcastRow)
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(b).where(b.c.id == broadcast_id))).first()
        if row is None:
            raise NotFound(f"no broadcast with id {broadcast_id}")
        return _broadcast(row)

    async def for_issue(self, issue_date: dt.date) -> Broadcast:
        b = core_table(BroadcastRow)
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(b).where(b.c.issue_date == issue_date))).first()
        if row is None:
            raise NotFound(f"the issue of {issue_date} has not been broadcast")
        return _broadcast(row)

    async def list(self, limit: int = 50) -> builtins.list[Broadcast]:
        b = core_table(BroadcastRow)
        async with self._database.transaction() as connection:
            rows = (await connection.execute(select(b).order_by(b.c.id.desc()).limit(limit))).all()
        return [_broadcast(row) for row in rows]

    async def pause(self, broadcast_id: int) -> Broadcast:
        return await self._move(broadcast_id, BroadcastState.PAUSED, only_from=(BroadcastState.RUNNING,))

    async def resume(self, broadcast_id: int) -> Broadcast:
        return await self._move(broadcast_id, BroadcastState.RUNNING, only_from=(BroadcastState.PAUSED,))

    async def cancel(self, broadcast_id: int) -> Broadcast:
        """No more sends: pending deliveries become skipped ("cancelled"); sends in flight finish."""
        broadcast = await self._move(
            broadcast_id,
            BroadcastState.CANCELLED,
            only_from=(BroadcastState.RUNNING, BroadcastState.PAUSED),
        )
        d = core_table(DeliveryRow)
        async with self._database.transaction("write") as connection:
            await connection.execute(
                update(d)
                .where(d.c.broadcast_id == broadcast_id, d.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SKIPPED.value, last_error="cancelled by the editor")
            )
        return broadcast

    async def finish_if_done(self, broadcast_id: int) -> bool:
        """RUNNING -> DONE when none of its deliveries is pending or sending; True if it moved."""
        b, d = core_table(BroadcastRow), core_table(DeliveryRow)
        now = self._clock()
        unfinished = (
            select(d.c.id)
            .where(d.c.broadcast_id == broadcast_id, d.c.state.in_([state.value for state in UNFINISHED]))
            .exists()
        )
        async with self._database.transaction("write") as connection:
            result = await connection.execute(
                update(b)
                .where(b.c.id == broadcast_id, b.c.state == BroadcastState.RUNNING.value, ~unfinished)
                .values(state=BroadcastState.DONE.value, finished_at=now, updated_at=now)
            )
            return bool(result.rowcount)

    async def progress(self, broadcast_id: int) -> Progress:
        """The broadcast's counts now: one scan of its rows (see the module's docstring for its cost)."""
        d = core_table(DeliveryRow)
        since = as_utc(self._clock() - RATE_PERIOD)
        statement = (
            select(
                d.c.channel,
                d.c.state,
                func.count().label("rows"),
                func.count().filter(d.c.uncertain.is_(True)).label("uncertain"),
                func.count()
                .filter(and_(d.c.state == DeliveryState.SENT.value, d.c.sent_at >= since))
                .label("recent"),
            )
            .where(d.c.broadcast_id == broadcast_id)
            .group_by(d.c.channel, d.c.state)
        )
        progress = Progress()
        async with self._database.transaction() as connection:
            if self._database.backend == "postgresql":
                # One core, not all: slower, but the service's replies keep the others (module docstring).
                await connection.execute(
                    text(f"SET LOCAL max_parallel_workers_per_gather = {PROGRESS_WORKERS}")
                )
            for row in await connection.execute(statement):
                progress.counts.setdefault(row.channel, {})[row.state] = row.rows
                progress.uncertain += row.uncertain
                progress.sent_last_minute += row.recent
        return progress

    async def _move(
        self, broadcast_id: int, state: BroadcastState, *, only_from: tuple[BroadcastState, ...]
    ) -> Broadcast:
        b = core_table(BroadcastRow)
        async with self._database.transaction("write") as connection:
            row = (
                await connection.execute(select(b).where(b.c.id == broadcast_id).with_for_update())
            ).first()
            if row is None:
                raise NotFound(f"no broadcast with id {broadcast_id}")
            current = BroadcastState(row.state)
            if current != state:
                if current not in only_from:
                    raise Conflict(
                        f"the broadcast of {row.issue_date} is {current.value}; it cannot be {state.value}"
                    )
                await connection.execute(
                    update(b)
                    .where(b.c.id == broadcast_id)
                    .values(state=state.value, updated_at=self._clock())
                )
            row = (await connection.execute(select(b).where(b.c.id == broadcast_id))).one()
        return _broadcast(row)

    def _insert_deliveries(self) -> Any:
        d = core_table(DeliveryRow)
        dialect = postgresql if self._database.backend == "postgresql" else sqlite
        return dialect.insert(d).on_conflict_do_nothing(
            index_elements=[d.c.broadcast_id, d.c.channel, d.c.subscriber_id]
        )

    async def _add_recipients(
        self,
        connection: AsyncConnection,
        broadcast_id: int,
        channels: builtins.list[str],
        audience: Audience,
        now: dt.datetime,
        page: int,
    ) -> tuple[int, int]:
        s, d = core_table(SubscriberRow), core_table(DeliveryRow)
        pending = skipped = 0
        after = 0
        while True:
            rows = (await connection.execute(_recipients_page(s, channels, after, page))).all()
            if not rows:
                return pending, skipped
            after = rows[-1].id
            # Only those without a row yet: counting what was added, and no conflict to resolve. The page's
            # id range on the unique key's columns is an index range scan; an IN list of the page's 5,000
            # ids was compared row by row with every row written so far (quadratic: 200,000 took 168 s).
            have = set(
                (
                    await connection.execute(
                        select(d.c.subscriber_id).where(
                            d.c.broadcast_id == broadcast_id,
                            d.c.channel.in_(channels),
                            d.c.subscriber_id.between(rows[0].id, after),
                        )
                    )
                ).scalars()
            )
            values = []
            paused: list[int] = []
            for row in rows:
                if row.id in have:
                    continue
                if row.paused_issues > 0:
                    paused.append(row.id)
                    reason: str | None = PAUSED
                else:
                    reason = audience(_recipient(row))
                values.append(_row(broadcast_id, row.id, row.channel, DeliveryKind.DIRECT, reason, now))
                if reason is None:
                    pending += 1
                else:
                    skipped += 1
            if values:
                await connection.execute(self._insert_deliveries(), values)
            if paused:
                # `> 0` again: a reader who resumed since this page was read is not counted below zero.
                await connection.execute(
                    update(s)
                    .where(s.c.id.in_(paused), s.c.paused_issues > 0)
                    .values(paused_issues=s.c.paused_issues - 1)
                )


def _recipients_page(s: Any, channels: list[str], after: int, page: int) -> Any:
    return (
        select(s.c.id, s.c.channel, s.c.topics, s.c.last_seen_at, s.c.paused_issues)
        .where(
            and_(
                s.c.channel.in_(channels),
                s.c.status == SubscriberStatus.ACTIVE.value,
                s.c.id > after,
            )
        )
        .order_by(s.c.id)
        .limit(page)
    )


def _topics(stored: str | None) -> tuple[str, ...]:
    """A subscriber's topics from the text of their JSON column (SQL NULL and JSON null: none)."""
    topics = json.loads(stored) if stored is not None else None
    return tuple(topics or ())


def _recipient(row: Row[Any]) -> Recipient:
    seen = row.last_seen_at
    if seen is not None and seen.tzinfo is None:
        seen = seen.replace(tzinfo=dt.UTC)
    return Recipient(
        subscriber_id=row.id, channel=row.channel, topics=tuple(row.topics or ()), last_seen_at=seen
    )


def _row(
    broadcast_id: int,
    subscriber_id: int | None,
    channel: str,
    kind: DeliveryKind,
    skip_reason: str | None,
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "broadcast_id": broadcast_id,
        "subscriber_id": subscriber_id,
        "channel": channel,
        "kind": kind.value,
        "state": (DeliveryState.PENDING if skip_reason is None else DeliveryState.SKIPPED).value,
        "parts_done": 0,
        "attempts": 0,
        "uncertain": False,
        "next_attempt_at": now,
        "last_error": skip_reason,
    }


def _checked_channels(channels: Sequence[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(channels))
    if not wanted:
        raise BadInput("name at least one channel")
    for channel in wanted:
        if not channel or len(channel) > NAME_LENGTH or not channel.isidentifier():
            raise BadInput(f"not a channel name: {channel[:20]!r}")
    return wanted


def as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone: what it returns is the UTC time it was given, without tzinfo.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _broadcast(row: Row[Any]) -> Broadcast:
    return Broadcast(
        id=row.id,
        issue_date=row.issue_date,
        channels=tuple(row.channels),
        state=BroadcastState(row.state),
        options=dict(row.options or {}),
        start_at=as_utc(row.start_at),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        finished_at=None if row.finished_at is None else as_utc(row.finished_at),
    )
