"""What a broadcast came to, per channel: sent (with the "maybe delivered" among them), failed, blocked,
bounced, skipped; the clicks on its links; who left and who joined in the days after it.

Delivery figures are one grouped query over the broadcast's rows (GROUP BY channel, state, outcome,
uncertain: a handful of groups, folded here), the same single scan as BroadcastStore.progress, and as
costly: at 1,000,000 deliveries about 300 ms on one core. So:

- once the broadcast is DONE or CANCELLED and none of its rows is pending or sending (a cancelled one's
  sends in flight finish after the cancel), its rows no longer change: the figures are counted once more
  and kept in `broadcast_tally`, a row per channel, and every later look reads those few rows;
- a kept tally holds while its `counted_at` is later than the broadcast's `updated_at`: sending the issue
  again (subscribers who joined since) touches `updated_at` and may run the broadcast again, and the
  figures are counted afresh once it is finished again. The two times come from the clocks of the
  machines that wrote them, which are assumed to keep NTP time (as the workers' leases are);
- while it runs, watchers share one count per few seconds through bot/broadcast/snapshots.py
  (`StatsSnapshots`), as they share its progress.

`sent` counts every SENT delivery; `uncertain` those of them a timeout left open (maybe delivered, never
resent), so the surely delivered are `sent - uncertain`. `failed` is the FAILED deliveries other than
`blocked` and `bounced`, which come from delivery.outcome (storage/deliveries.py), not from last_error.

Unsubscribes and new subscribers are attributed by time, not by link: a subscriber who is UNSUBSCRIBED
now and left within ATTRIBUTION_DAYS of the broadcast's start counts for it, whichever issue made them
leave (or whether one did), and so does a subscriber (not PENDING) who joined within those days; two
broadcasts a few days apart share the days between them. They are range counts on the indexes
ix_subscriber_left_at and ix_subscriber_created_at (migration 0008): without them, a scan of the
subscribers.

Clicks are the link table's counters as storage/clicks.py keeps them (`ClickStore.link_stats`: a row per
tracked link of the issue, no scan of the clicks), summed per channel of the broadcast and per URL. A
link's section and title are those of the issue's first item whose url or links hold its URL (UTM
parameters aside), "" if none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import ColumnElement, func, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite

from content.errors import NotFound
from content.model import Issue
from storage.broadcasts import (
    PROGRESS_WORKERS,
    UNFINISHED,
    Broadcast,
    BroadcastState,
    DeliveryState,
    as_utc,
)
from storage.clicks import ClickStore, LinkStats
from storage.database import Database
from storage.deliveries import DeliveryOutcome
from storage.issues import IssueStore
from storage.subscribers import SubscriberStatus
from storage.tables import BroadcastRow, BroadcastTallyRow, DeliveryRow, SubscriberRow, core_table

# Who left or joined within this many days of a broadcast's start counts for it.
ATTRIBUTION_DAYS = 7
# The warm-up bullets before the first section have no section of their own: they are named as the
# channels name them (channels/telegram/render.py QUICK_NEWS_HEADER).
QUICK_NEWS = "热身小新闻"
QUICK_NEWS_TITLE_CHARS = 60
ATTRIBUTION = dt.timedelta(days=ATTRIBUTION_DAYS)
# A broadcast in one of these states gets no new sends; its figures are kept once nothing is in flight.
SETTLED = (BroadcastState.DONE, BroadcastState.CANCELLED)


@dataclass(frozen=True, slots=True)
class ChannelTally:
    """One channel's deliveries of a broadcast, by what became of them."""

    sent: int = 0
    failed: int = 0  # failed for another reason than blocked or bounced
    blocked: int = 0
    bounced: int = 0
    skipped: int = 0
    uncertain: int = 0  # among `sent`: a timeout left it open whether the platform delivered it

    def to_dict(self) -> dict[str, int]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


# The tally's counters, in the order of the table's columns and of the JSON.
TALLY_FIELDS = tuple(item.name for item in fields(ChannelTally))


@dataclass(frozen=True, slots=True)
class Tally:
    """A broadcast's figures per channel as counted at `counted_at`."""

    broadcast_id: int
    channels: dict[str, ChannelTally]
    counted_at: dt.datetime
    unfinished: int = 0  # deliveries pending or sending when counted (0 for a kept tally)
    kept: bool = False  # read from broadcast_tally rather than counted from the deliveries


class LinkCounts(Protocol):
    """Where clicks are counted: storage/clicks.py's ClickStore (the default)."""

    async def link_stats(self, issue_date: dt.date) -> Sequence[LinkStats]: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _LinkTotal:
    url: str
    clicks: int = 0
    unique_clicks: int = 0
    channels: set[str] = field(default_factory=set)


class BroadcastStats:
    def __init__(
        self,
        database: Database,
        *,
        links: LinkCounts | None = None,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._database = database
        self._links = links if links is not None else ClickStore(database)
        self._clock = clock

    async def tally(self, broadcast_id: int) -> Tally:
        """The broadcast's figures per channel: the kept tally when there is a valid one; otherwise
        counted, and kept when the broadcast is settled with nothing in flight (module docstring)."""
        b, t = core_table(BroadcastRow), core_table(BroadcastTallyRow)
        async with self._database.transaction() as connection:
            broadcast = (
                await connection.execute(
                    select(b.c.state, b.c.channels, b.c.updated_at).where(b.c.id == broadcast_id)
                )
            ).first()
            if broadcast is None:
                raise NotFound(f"no broadcast with id {broadcast_id}")
            settled = BroadcastState(broadcast.state) in SETTLED
            kept = (
                (await connection.execute(select(t).where(t.c.broadcast_id == broadcast_id))).all()
                if settled
                else []
            )
        updated_at = as_utc(broadcast.updated_at)
        if kept and all(as_utc(row.counted_at) > updated_at for row in kept):
            return Tally(
                broadcast_id,
                {
                    row.channel: ChannelTally(**{name: getattr(row, name) for name in TALLY_FIELDS})
                    for row in kept
                },
                min(as_utc(row.counted_at) for row in kept),
                kept=True,
            )
        counted = await self.count(broadcast_id, channels=broadcast.channels)
        if settled and not counted.unfinished:
            await self._keep(counted)
        return counted

    async def count(self, broadcast_id: int, *, channels: Iterable[str] = ()) -> Tally:
        """The figures counted now from the deliveries (one scan); `channels` appear even without rows."""
        d = core_table(DeliveryRow)
        counted_at = self._clock()
        statement = (
            select(d.c.channel, d.c.state, d.c.outcome, d.c.uncertain, func.count().label("rows"))
            .where(d.c.broadcast_id == broadcast_id)
            .group_by(d.c.channel, d.c.state, d.c.outcome, d.c.uncertain)
        )
        totals: dict[str, dict[str, int]] = {channel: dict.fromkeys(TALLY_FIELDS, 0) for channel in channels}
        unfinished = 0
        unfinished_states = {state.value for state in UNFINISHED}
        async with self._database.transaction() as connection:
            if self._database.backend == "postgresql":
                # One core, as BroadcastStore.progress: the service's replies keep the others.
                await connection.execute(
                    text(f"SET LOCAL max_parallel_workers_per_gather = {PROGRESS_WORKERS}")
                )
            groups = (await connection.execute(statement)).all()
        for group in groups:
            counts = totals.setdefault(group.channel, dict.fromkeys(TALLY_FIELDS, 0))
            if group.state in unfinished_states:
                unfinished += group.rows
            elif group.state == DeliveryState.SENT.value:
                counts["sent"] += group.rows
                if group.uncertain:
                    counts["uncertain"] += group.rows
            elif group.state == DeliveryState.SKIPPED.value:
                counts["skipped"] += group.rows
            elif group.state == DeliveryState.FAILED.value:
                known = group.outcome in {outcome.value for outcome in DeliveryOutcome}
                counts[group.outcome if known else "failed"] += group.rows
        return Tally(
            broadcast_id,
            {channel: ChannelTally(**counts) for channel, counts in totals.items()},
            counted_at,
            unfinished=unfinished,
        )

    async def _keep(self, tally: Tally) -> None:
        t = core_table(BroadcastTallyRow)
        rows = [
            {"broadcast_id": tally.broadcast_id, "channel": channel, "counted_at": tally.counted_at}
            | counts.to_dict()
            for channel, counts in tally.channels.items()
        ]
        if not rows:
            return
        dialect = postgresql if self._database.backend == "postgresql" else sqlite
        insert = dialect.insert(t)
        # An upsert: two processes keeping the same tally at once both succeed, with the same figures.
        statement = insert.on_conflict_do_update(
            index_elements=[t.c.broadcast_id, t.c.channel],
            set_={name: insert.excluded[name] for name in (*TALLY_FIELDS, "counted_at")},
        )
        async with self._database.transaction("write") as connection:
            await connection.execute(statement, rows)

    async def unsubscribes(self, broadcast: Broadcast) -> dict[str, int]:
        """Per channel, subscribers now UNSUBSCRIBED who left within ATTRIBUTION_DAYS of the broadcast's
        start: attribution by time, not by link (module docstring)."""
        s = core_table(SubscriberRow)
        # The status as a literal, not a parameter: only then can PostgreSQL match the partial index
        # ix_subscriber_unsubscribed_left_at (a generic plan knows nothing of a parameter's value).
        unsubscribed: ColumnElement[str] = literal_column(f"'{SubscriberStatus.UNSUBSCRIBED.value}'")
        return await self._count_subscribers(s.c.left_at, broadcast.start_at, s.c.status == unsubscribed)

    async def new_subscribers(self, broadcast: Broadcast) -> dict[str, int]:
        """Per channel, subscribers (not PENDING) who joined within ATTRIBUTION_DAYS of the broadcast's
        start: attribution by time, as `unsubscribes`."""
        s = core_table(SubscriberRow)
        return await self._count_subscribers(
            s.c.created_at, broadcast.start_at, s.c.status != SubscriberStatus.PENDING.value
        )

    async def _count_subscribers(self, moment: Any, start_at: dt.datetime, condition: Any) -> dict[str, int]:
        s = core_table(SubscriberRow)
        start = as_utc(start_at)
        statement = (
            select(s.c.channel, func.count().label("rows"))
            .where(moment >= start, moment < start + ATTRIBUTION, condition)
            .group_by(s.c.channel)
        )
        async with self._database.transaction() as connection:
            rows = (await connection.execute(statement)).all()
        return {row.channel: row.rows for row in sorted(rows)}

    async def report(self, broadcast: Broadcast, tally: Tally | None = None) -> dict[str, object]:
        """The figures as `jianbao broadcast stats --json` and GET /api/broadcasts/{id}/stats give them:
        {"date", "channels": {NAME: {"sent", "failed", "blocked", "bounced", "skipped", "uncertain",
        "clicks", "unique_clicks"}}, "links": [{"url", "section", "title", "clicks", "unique_clicks"}],
        "unsubscribes": {NAME: n}, "filtered_clicks"}. `tally`: one already at hand (a shared one)."""
        if tally is None:
            tally = await self.tally(broadcast.id)
        stats = [
            link
            for link in await self._links.link_stats(broadcast.issue_date)
            if link.channel in tally.channels
        ]
        clicks = dict.fromkeys(tally.channels, 0)
        unique = dict.fromkeys(tally.channels, 0)
        by_url: dict[str, _LinkTotal] = {}
        filtered = 0
        for link in stats:
            clicks[link.channel] += link.clicks
            unique[link.channel] += link.unique_clicks
            filtered += link.filtered_clicks
            url = without_utm(link.url)
            total = by_url.setdefault(url, _LinkTotal(url))
            total.clicks += link.clicks
            total.unique_clicks += link.unique_clicks
        issue = await IssueStore(self._database).get(broadcast.issue_date)
        places = item_places(issue) if issue is not None else {}
        links = [
            {
                "url": total.url,
                "section": places.get(total.url, ("", ""))[0],
                "title": places.get(total.url, ("", ""))[1],
                "clicks": total.clicks,
                "unique_clicks": total.unique_clicks,
            }
            for total in sorted(by_url.values(), key=lambda total: (-total.clicks, total.url))
        ]
        return {
            "date": broadcast.issue_date.isoformat(),
            "channels": {
                channel: counts.to_dict() | {"clicks": clicks[channel], "unique_clicks": unique[channel]}
                for channel, counts in sorted(tally.channels.items())
            },
            "links": links,
            "unsubscribes": await self.unsubscribes(broadcast),
            "filtered_clicks": filtered,
        }


def item_places(issue: Issue) -> dict[str, tuple[str, str]]:
    """URL (UTM parameters aside) -> (section name, item title) of the first item whose url or links
    hold it, in document order; the warm-up news before the first section count as QUICK_NEWS, titled by
    their text."""
    places: dict[str, tuple[str, str]] = {}
    for news in issue.quick_news:
        for url in (news.url, *(link.url for link in news.links)):
            if url:
                places.setdefault(without_utm(url), (QUICK_NEWS, shorten(news.text, QUICK_NEWS_TITLE_CHARS)))
    for section in issue.sections:
        for item in section.items:
            for url in (item.url, *(link.url for link in item.links)):
                if url:
                    places.setdefault(without_utm(url), (section.name, item.title))
    return places


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_utm(url: str) -> str:
    """`url` without the utm_* query parameters channels/links.py adds (per channel), so that one
    item's link is one URL on every channel."""
    parts = urlsplit(url)
    if "utm_" not in parts.query:
        return url
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.startswith("utm_")
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))
