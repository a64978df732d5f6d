"""Clicks on tracked links: recorded in batches, and counted as they are recorded, so that the analytics
pages read small aggregates and never scan the clicks themselves.

/r/{token} redirects at once and hands the click to a buffer (bot/click_buffer.py), which calls
`ClickStore.record` with a batch about once a second. In one write transaction a batch is inserted, each
click is decided (counted, or filtered as a "preview", a "scanner" or a "repeat"), and the aggregates grow
by what was counted: link.clicks (counted clicks), link.unique_clicks, link.filtered_clicks, and the
link's row of the hour in click_hour (the timeline).

Who clicked: a tracking link stands for (issue, channel, URL), not for a subscriber, so nobody is behind a
click (unless it is a reader's, below). The clicker is a keyed hash of the client's address and user agent
(bot/click_buffer.py), its key derived from the secret key and the UTC day: the address is never stored, and
the same person is a new clicker every UTC day. "Unique" is therefore "first counted click of this clicker on
this link", where a reader clicking on Monday and again on Tuesday counts as two unique clickers.

A reader's click (JIANBAO_TRACK_SUBSCRIBERS, off by default): a tracked link in a subscriber's mail carries
their signed reader id, and the redirect hands the verified id over as ClickEvent.subscriber_id (only while
the setting is on; without it nothing per subscriber reaches this store). The click is theirs when a mail
of the link's issue went to them on the link's channel (a delivery row): its row keeps subscriber_id, and
its clicker is "s:<id>", so repeats and uniqueness follow the person across days and devices. Without
such a mail (an id reused by SQLite after an erasure) the id is dropped and the click is the hash's. The
click rows of a subscriber go when they are erased (ON DELETE CASCADE); the aggregates, which name
nobody, keep the counts.

Mail scanners by timing, beside bot/click_filter.py's user agents (which catch only scanners that say who
they are):
(a) A reader's click within SCANNER_SECONDS after their mail was sent (delivery.sent_at of the broadcast
    of the link's issue), or before it was recorded as sent, is a "scanner": the receiving gateway
    checking the mail's links as it arrives.
(b) Without a reader (and with one too): one clicker fetching SCANNER_BURST_LINKS different links of one
    issue within SCANNER_BURST_SECONDS is a scanner following every link of the mail. All its clicks in
    that burst become "scanner", those stored by earlier batches included: in this batch's transaction
    they are marked so and taken back out of link.clicks, unique_clicks and click_hour (a taken-back
    click was unique when no other counted click of its link and clicker is left), and into
    filtered_clicks. A burst seen only when its last click arrives is thus corrected, not missed; figures
    read before that moment counted the first clicks.

A repeat: the same clicker on the same link within REPEAT_WINDOW of one of its counted clicks, whether
that one is in the database or earlier in the same batch. Within, either way: another process's batch of
the seconds before may be recorded after this one's, so the counted click found may be a little later.

Batches of several processes (`serve --workers 2`) may race: on PostgreSQL each batch takes a transaction
advisory lock first, so two batches never both decide that the same clicker's click is its first; SQLite
has one writer at a time anyway. The counters are incremented in the statement (x = x + n), so no count is
lost either way.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from cachetools import TTLCache
from sqlalchemy import bindparam, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from content.errors import BadInput, NotFound
from storage.database import Database
from storage.links import LinkStore, TrackedLink
from storage.tables import BroadcastRow, ClickHourRow, ClickRow, DeliveryRow, LinkRow, core_table

# "Repeated clicks by one subscriber within 5 minutes count once" (the issue "After the send").
REPEAT_WINDOW = dt.timedelta(minutes=5)
# The advisory lock a batch of clicks holds on PostgreSQL. Any fixed number will do, as long as nothing
# else uses it (storage/migrate.py's lock is another).
CLICKS_LOCK = 0x6A62_636C  # "jbcl"
# token -> link of the redirect's cache: a few thousand links are live at a time (an issue has ~100).
LINK_CACHE_SIZE = 10_000
# How long another process's `set_url` may go unseen by this one's cache.
LINK_CACHE_SECONDS = 30.0
_SCHEMES = ("http", "https")
# Mail scanners by timing, (a): a reader's click this soon after their mail was sent is a machine's.
# Security gateways (Microsoft Defender's Safe Links, Mimecast, Proofpoint, Barracuda) fetch a mail's links
# as the mail is delivered, within a second or two of the SMTP hand-over; a person must see the mail
# arrive, open it, read down to a link and click, which takes longer than this. An editorial bound (no
# vendor publishes its timing): short enough that a reader who clicks the moment the mail arrives
# rarely falls under it.
SCANNER_SECONDS = dt.timedelta(seconds=10)
# (b): one clicker fetching this many different links of one issue within SCANNER_BURST_SECONDS is
# following every link of the mail: a reader opens one link, reads it, and only then comes back for the
# next. Three, not two: a reader may open two links in tabs in quick succession.
SCANNER_BURST_LINKS = 3
SCANNER_BURST_SECONDS = dt.timedelta(seconds=2)
# The clicker of a reader's click: their subscriber id, not a hash (see the docstring).
READER_CLICKER = "s:"

Filtered = Literal["preview", "scanner", "repeat"]


@dataclass(frozen=True, slots=True)
class ClickEvent:
    """One GET of /r/{token}, as the redirect saw it."""

    token: str
    at: dt.datetime  # aware, UTC
    clicker: str  # keyed hash, see the module's docstring
    filtered: Literal["preview", "scanner"] | None = None  # bot/click_filter.py's verdict
    # The reader's id their mail's link carried (JIANBAO_TRACK_SUBSCRIBERS only; see the docstring).
    subscriber_id: int | None = None


@dataclass(frozen=True, slots=True)
class LinkStats:
    token: str
    channel: str
    url: str
    clicks: int
    unique_clicks: int
    filtered_clicks: int  # previews, scanners and repeats


@dataclass(frozen=True, slots=True)
class HourClicks:
    hour: dt.datetime
    channel: str
    clicks: int
    unique_clicks: int


@dataclass
class _Counts:
    clicks: int = 0
    unique_clicks: int = 0
    filtered_clicks: int = 0


class ClickStore:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._links = LinkStore(database)
        self._cache: TTLCache[str, TrackedLink] = TTLCache(maxsize=LINK_CACHE_SIZE, ttl=LINK_CACHE_SECONDS)

    async def link(self, token: str) -> TrackedLink | None:
        """The link of `token` for the redirect, from this process's cache when it can (its `clicks` are
        then stale: use link_stats for figures). Unknown tokens are not cached: a flood of forged ones
        must not push the real links out."""
        found = self._cache.get(token)
        if found is None:
            found = await self._links.find(token)
            if found is not None:
                self._cache[token] = found
        return found

    async def record(self, clicks: Sequence[ClickEvent]) -> None:
        """Insert `clicks`, decide each, and add them to the aggregates, in one write transaction. Clicks
        on tokens not (or no longer) stored are dropped; counted clicks found to be a scanner's burst are
        taken back out of the aggregates."""
        if not clicks:
            return
        link, click = core_table(LinkRow), core_table(ClickRow)
        tokens = sorted({event.token for event in clicks})
        async with self._database.transaction("write") as connection:
            if self._database.backend == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLICKS_LOCK})
            known = {
                row.token: _Link(row.issue_date, row.channel)
                for row in await connection.execute(
                    select(link.c.token, link.c.issue_date, link.c.channel).where(link.c.token.in_(tokens))
                )
            }
            ordered = [event for event in sorted(clicks, key=lambda event: event.at) if event.token in known]
            if not ordered:
                return
            decided = await _readers(connection, ordered, known)
            per_link: dict[str, _Counts] = {}
            per_hour: dict[tuple[str, dt.datetime], _Counts] = {}
            await _bursts(connection, decided, known, per_link, per_hour)
            pairs = sorted({(one.token, one.clicker) for one in decided if one.filtered is None})
            # The last counted click of each (link, clicker) of the batch: one indexed probe per pair.
            last_counted: dict[tuple[str, str], dt.datetime] = {}
            if pairs:
                found = await connection.execute(
                    select(click.c.token, click.c.clicker, func.max(click.c.at))
                    .where(tuple_(click.c.token, click.c.clicker).in_(pairs), click.c.counted)
                    .group_by(click.c.token, click.c.clicker)
                )
                last_counted = {(token, clicker): _utc(at) for token, clicker, at in found}
            rows: list[dict[str, object]] = []
            for one in decided:
                counts = per_link.setdefault(one.token, _Counts())
                key = (one.token, one.clicker)
                previous = last_counted.get(key)
                if one.filtered is None and previous is not None and abs(one.at - previous) < REPEAT_WINDOW:
                    one.filtered = "repeat"
                rows.append(
                    {
                        "token": one.token,
                        "at": one.at,
                        "clicker": one.clicker,
                        "counted": one.filtered is None,
                        "filtered": one.filtered,
                        "subscriber_id": one.subscriber_id,
                    }
                )
                if one.filtered is not None:
                    counts.filtered_clicks += 1
                    continue
                hour = per_hour.setdefault((one.token, _hour(one.at)), _Counts())
                counts.clicks += 1
                hour.clicks += 1
                if previous is None:
                    counts.unique_clicks += 1
                    hour.unique_clicks += 1
                last_counted[key] = max(one.at, previous) if previous else one.at
            await connection.execute(click.insert(), rows)
            await self._add(connection, known, per_link, per_hour)

    async def _add(
        self,
        connection: AsyncConnection,
        known: dict[str, _Link],
        per_link: dict[str, _Counts],
        per_hour: dict[tuple[str, dt.datetime], _Counts],
    ) -> None:
        """Add the counts (negative ones too: corrections) to link and click_hour."""
        link, hours = core_table(LinkRow), core_table(ClickHourRow)
        await connection.execute(
            update(link)
            .where(link.c.token == bindparam("b_token"))
            .values(
                clicks=link.c.clicks + bindparam("b_clicks"),
                unique_clicks=link.c.unique_clicks + bindparam("b_unique"),
                filtered_clicks=link.c.filtered_clicks + bindparam("b_filtered"),
            ),
            [
                {
                    "b_token": token,
                    "b_clicks": counts.clicks,
                    "b_unique": counts.unique_clicks,
                    "b_filtered": counts.filtered_clicks,
                }
                for token, counts in sorted(per_link.items())
            ],
        )
        if per_hour:
            dialect = postgresql if self._database.backend == "postgresql" else sqlite
            statement = dialect.insert(hours)
            statement = statement.on_conflict_do_update(
                index_elements=[hours.c.token, hours.c.hour],
                set_={
                    "clicks": hours.c.clicks + statement.excluded.clicks,
                    "unique_clicks": hours.c.unique_clicks + statement.excluded.unique_clicks,
                },
            )
            await connection.execute(
                statement,
                [
                    {
                        "token": token,
                        "hour": hour,
                        "issue_date": known[token].issue_date,
                        "channel": known[token].channel,
                        "clicks": counts.clicks,
                        "unique_clicks": counts.unique_clicks,
                    }
                    for (token, hour), counts in sorted(per_hour.items())
                ],
            )

    async def link_stats(self, issue_date: dt.date) -> list[LinkStats]:
        """Every tracked link of one issue with its figures, by channel, most clicked first."""
        link = core_table(LinkRow)
        async with self._database.transaction() as connection:
            rows = await connection.execute(
                select(
                    link.c.token,
                    link.c.channel,
                    link.c.url,
                    link.c.clicks,
                    link.c.unique_clicks,
                    link.c.filtered_clicks,
                )
                .where(link.c.issue_date == issue_date)
                .order_by(link.c.channel, link.c.clicks.desc(), link.c.token)
            )
            return [LinkStats(*row) for row in rows]

    async def timeline(self, issue_date: dt.date, since: dt.datetime) -> list[HourClicks]:
        """Counted and unique clicks of one issue per hour (from `since`) and channel, oldest first. The
        hourly rows add up: a caller showing days sums the hours of each."""
        hours = core_table(ClickHourRow)
        async with self._database.transaction() as connection:
            rows = await connection.execute(
                select(
                    hours.c.hour,
                    hours.c.channel,
                    func.sum(hours.c.clicks),
                    func.sum(hours.c.unique_clicks),
                )
                .where(hours.c.issue_date == issue_date, hours.c.hour >= _hour(since))
                .group_by(hours.c.hour, hours.c.channel)
                .order_by(hours.c.hour, hours.c.channel)
            )
            return [HourClicks(_utc(hour), channel, int(c), int(u)) for hour, channel, c, u in rows]

    async def set_url(self, token: str, url: str) -> None:
        """Send the later clicks of `token` to `url` (an editor fixing a link after sending). This
        process's redirect follows at once; another process's within LINK_CACHE_SECONDS."""
        if urlsplit(url).scheme.lower() not in _SCHEMES or not urlsplit(url).netloc:
            raise BadInput("a tracked link must be an http(s) URL")
        link = core_table(LinkRow)
        async with self._database.transaction("write") as connection:
            result = await connection.execute(update(link).where(link.c.token == token).values(url=url))
        self._cache.pop(token, None)
        if result.rowcount == 0:
            raise NotFound("unknown link")


@dataclass(frozen=True, slots=True)
class _Link:
    issue_date: dt.date
    channel: str


@dataclass(slots=True)
class _Click:
    """A click of the batch being decided."""

    token: str
    at: dt.datetime
    clicker: str
    subscriber_id: int | None
    filtered: Filtered | None


@dataclass(frozen=True, slots=True)
class _Stored:
    """A click stored before the batch, as a burst reads it."""

    id: int
    token: str
    at: dt.datetime
    clicker: str
    counted: bool


async def _readers(
    connection: AsyncConnection, ordered: Sequence[ClickEvent], known: dict[str, _Link]
) -> list[_Click]:
    """The batch with each reader's click theirs ("s:<id>") when a mail of the link's issue went to them
    on the link's channel, and a "scanner" when it came within SCANNER_SECONDS of that mail's sending."""
    wanted = sorted({event.subscriber_id for event in ordered if event.subscriber_id is not None})
    mails: dict[tuple[int, dt.date, str], dt.datetime | None] = {}
    if wanted:
        d, b = core_table(DeliveryRow), core_table(BroadcastRow)
        dates = sorted({known[event.token].issue_date for event in ordered})
        found = await connection.execute(
            select(d.c.subscriber_id, b.c.issue_date, d.c.channel, d.c.sent_at)
            .join(b, b.c.id == d.c.broadcast_id)
            .where(d.c.subscriber_id.in_(wanted), b.c.issue_date.in_(dates))
        )
        mails = {
            (sid, issue_date, channel): None if sent_at is None else _utc(sent_at)
            for sid, issue_date, channel, sent_at in found
        }
    decided = []
    for event in ordered:
        place = known[event.token]
        reader, filtered = event.subscriber_id, event.filtered
        if reader is not None:
            key = (reader, place.issue_date, place.channel)
            if key not in mails:
                reader = None  # no such mail: not theirs to claim (an id reused after an erasure)
            elif filtered is None and _too_soon(event.at, mails[key]):
                filtered = "scanner"
        clicker = event.clicker if reader is None else f"{READER_CLICKER}{reader}"
        decided.append(_Click(event.token, event.at, clicker, reader, filtered))
    return decided


def _too_soon(at: dt.datetime, sent_at: dt.datetime | None) -> bool:
    # Not recorded as sent yet: the worker records a mail after the SMTP server took it (and in batches),
    # so a fetch before then is the receiving side's.
    return sent_at is None or at - sent_at < SCANNER_SECONDS


async def _bursts(
    connection: AsyncConnection,
    decided: list[_Click],
    known: dict[str, _Link],
    per_link: dict[str, _Counts],
    per_hour: dict[tuple[str, dt.datetime], _Counts],
) -> None:
    """Mark the batch's clicks that belong to a burst (SCANNER_BURST_LINKS links of one issue by one
    clicker within SCANNER_BURST_SECONDS, with the clicks already stored) as "scanner", and take the
    stored counted clicks of a burst back: they become "scanner", and `per_link` and `per_hour` get
    the (negative) corrections of their counts."""
    click, link = core_table(ClickRow), core_table(LinkRow)
    dates = sorted({known[one.token].issue_date for one in decided})
    clickers = sorted({one.clicker for one in decided})
    since = decided[0].at - SCANNER_BURST_SECONDS
    until = decided[-1].at + SCANNER_BURST_SECONDS
    stored = (
        await connection.execute(
            select(
                click.c.id,
                click.c.token,
                click.c.at,
                click.c.clicker,
                click.c.counted,
                link.c.issue_date,
                link.c.channel,
            )
            .join(link, link.c.token == click.c.token)
            .where(
                link.c.issue_date.in_(dates),
                click.c.clicker.in_(clickers),
                click.c.at >= since,
                click.c.at <= until,
            )
        )
    ).all()
    groups: dict[tuple[dt.date, str], list[tuple[dt.datetime, str, _Click | _Stored]]] = {}
    for one in decided:
        groups.setdefault((known[one.token].issue_date, one.clicker), []).append((one.at, one.token, one))
    for row in stored:
        group = groups.get((row.issue_date, row.clicker))
        if group is not None:
            group.append(
                (_utc(row.at), row.token, _Stored(row.id, row.token, _utc(row.at), row.clicker, row.counted))
            )
            known.setdefault(row.token, _Link(row.issue_date, row.channel))  # its counts may be corrected
    taken_back: list[_Stored] = []
    for group in groups.values():
        if len({token for _, token, _ in group}) < SCANNER_BURST_LINKS:
            continue
        group.sort(key=lambda entry: entry[0])
        for _, _, member in (group[index] for index in sorted(_in_bursts(group))):
            if isinstance(member, _Click):
                member.filtered = member.filtered or "scanner"
            elif member.counted:
                taken_back.append(member)
    if taken_back:
        await _take_back(connection, taken_back, per_link, per_hour)


def _in_bursts(group: Sequence[tuple[dt.datetime, str, object]]) -> set[int]:
    """The indexes of `group` (sorted by time) within some SCANNER_BURST_SECONDS that hold clicks on
    SCANNER_BURST_LINKS different links or more."""
    members: set[int] = set()
    links: Counter[str] = Counter()
    left = 0
    for right, (at, token, _) in enumerate(group):
        links[token] += 1
        while at - group[left][0] > SCANNER_BURST_SECONDS:
            gone = group[left][1]
            links[gone] -= 1
            if not links[gone]:
                del links[gone]
            left += 1
        if len(links) >= SCANNER_BURST_LINKS:
            members.update(range(left, right + 1))
    return members


async def _take_back(
    connection: AsyncConnection,
    rows: Sequence[_Stored],
    per_link: dict[str, _Counts],
    per_hour: dict[tuple[str, dt.datetime], _Counts],
) -> None:
    """Stored counted clicks found to be a scanner's: "scanner" now, and their counts taken back. A click
    had counted as unique when no other counted click of its (link, clicker) is left."""
    click = core_table(ClickRow)
    await connection.execute(
        update(click)
        .where(click.c.id.in_(sorted(row.id for row in rows)))
        .values(counted=False, filtered="scanner")
    )
    pairs = sorted({(row.token, row.clicker) for row in rows})
    still = {
        (token, clicker)
        for token, clicker in await connection.execute(
            select(click.c.token, click.c.clicker)
            .where(tuple_(click.c.token, click.c.clicker).in_(pairs), click.c.counted)
            .distinct()
        )
    }
    first: dict[tuple[str, str], _Stored] = {}
    for row in sorted(rows, key=lambda row: row.at):
        first.setdefault((row.token, row.clicker), row)
        counts = per_link.setdefault(row.token, _Counts())
        counts.clicks -= 1
        counts.filtered_clicks += 1
        per_hour.setdefault((row.token, _hour(row.at)), _Counts()).clicks -= 1
    for pair, row in first.items():
        if pair not in still:
            per_link[row.token].unique_clicks -= 1
            per_hour[(row.token, _hour(row.at))].unique_clicks -= 1


def _hour(at: dt.datetime) -> dt.datetime:
    return _utc(at).replace(minute=0, second=0, microsecond=0)


def _utc(at: dt.datetime) -> dt.datetime:
    # SQLite hands timestamps back naive (they were stored in UTC).
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
