"""The subscribers of every channel in one table: who gets the newsletter where, and on which topics.

A subscriber is (channel, address): an email address, a Telegram chat id, a WeChat openid, a robot's key.
Storage stores: which addresses are valid and what makes two spellings one subscriber are the channels'
rules (channels/registry.py), handed to the store as `keys`. The address is kept as given; two spellings
of one email address (Reader@Example.com, reader@example.com) are the same subscriber because the unique
key is on a normalised copy. Leaving is a status with a time (left_at), so a
later sign-up, a bounce report or an export knows the history. The store deletes a row only when it is
nobody's history (an email sign-up never confirmed whose link has expired, `purge_unconfirmed`: anyone
can make such rows by filling in the form) or a person asks to be forgotten (`erase`, below).

For an email sign-up, `last_seen_at` is when the address last asked to join: the confirmation link the
last sign-up mailed is dated from it (for WeChat it is the last message, which opens the reply window).

`normalise_topics` is the topic rule of the command line and the sign-up form.

The editors' desk (bot/console/subscribers.py) pages through subscribers by id (`search`, a keyset: no
OFFSET that reads every skipped row), reads one subscriber's deliveries (`history`), and erases a person
(`erase`): their row, deliveries and clicks go, and their address is cut out of every other text the database
keeps about operations (audit details of test sends, delivery errors) in the same transaction, which
also records the erasure by id, without the address. The published issues (issue, section, item, link)
are left as they are: they are the newsletter, not data about a reader.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    String,
    and_,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from content.errors import BadInput
from storage.audit import append_entry, subscriber_subject
from storage.database import Database
from storage.tables import (
    MAX_ADDRESS_LENGTH,
    NAME_LENGTH,
    BroadcastRow,
    ClickRow,
    DeliveryRow,
    LinkRow,
    SubscriberRow,
    core_table,
)

# Topic preferences: short labels (section names, keywords), a handful per subscriber.
MAX_TOPICS = 20
MAX_TOPIC_LENGTH = 32
# A reader may skip at most this many issues at once (about half a year of a bi-weekly newsletter): a
# pause is a break, and a counter that runs out is one a forgotten reader cannot be stuck in forever.
MAX_PAUSED_ISSUES = 12
MAX_LIST_LIMIT = 10_000
# Rows per transaction of an import: one commit (an fsync on SQLite) per row would make 10,000 rows take
# most of a minute.
IMPORT_BATCH = 500

_TOPIC_SEPARATORS = re.compile(r"[\s,;，；、]+")

# The desk's pages: rows per search page, and the newest deliveries shown of one subscriber.
MAX_SEARCH_LIMIT = 200
HISTORY_LIMIT = 50
# What an erased address becomes wherever else it was written.
ERASED = "[erased]"
# Tables an erasure leaves as they are: the published newsletter (its text may mention anything) and
# Alembic's bookkeeping. Every other table's text columns are searched, tables added later included.
UNTOUCHED_TABLES = frozenset({"issue", "section", "item", "link", "alembic_version", "subscriber"})


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up by email, confirmation link not clicked yet
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"  # left on their own
    BLOCKED = "blocked"  # the platform refuses delivery (bot blocked, WeChat unfollowed)
    BOUNCED = "bounced"  # the mail server refuses delivery


class ImportRow(NamedTuple):
    channel: str
    address: str
    topics: Sequence[str] = ()
    secret: str | None = None


class ImportOutcome(StrEnum):
    NEW = "new"
    UPDATED = "updated"  # a pending subscriber made active, or new topics
    UNCHANGED = "unchanged"
    LEFT = "left"  # they had unsubscribed, been blocked or bounced: an import does not bring them back


# Statuses in which nobody receives anything; subscribe() brings such a row back.
_GONE = (SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BLOCKED, SubscriberStatus.BOUNCED)


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    channel: str
    address: str
    status: SubscriberStatus
    topics: tuple[str, ...]
    created_at: dt.datetime  # UTC, like the other times
    confirmed_at: dt.datetime | None
    left_at: dt.datetime | None
    address_key: str  # what makes two spellings the same subscriber (the channel's rule)
    paused_issues: int = 0  # the next broadcasts that skip them (storage/broadcasts.py)


@dataclass(frozen=True, slots=True)
class SubscriberPage:
    subscribers: tuple[Subscriber, ...]
    next_after_id: int | None  # pass as `after_id` for the next page; None on the last one


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery of a broadcast to a subscriber, as their history shows it."""

    broadcast_id: int
    issue_date: dt.date
    channel: str
    state: str  # storage/broadcasts.py DeliveryState
    sent_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ClickRecord:
    """One click of a subscriber on a tracked link (kept only with JIANBAO_TRACK_SUBSCRIBERS)."""

    issue_date: dt.date
    url: str
    at: dt.datetime
    filtered: str | None  # None: counted; else "preview", "scanner" or "repeat" (storage/clicks.py)


@dataclass(frozen=True, slots=True)
class History:
    subscriber: Subscriber
    last_seen_at: dt.datetime | None
    bounces: int
    deliveries: tuple[DeliveryRecord, ...]  # newest first, at most the limit asked for
    clicks: tuple[ClickRecord, ...] = ()  # newest first, at most the limit asked for


# channel, address -> the unique key of the address: the channel's rule (channels.registry.address_key).
AddressKeys = Callable[[str, str], str]


def exact_key(channel: str, address: str) -> str:
    return address


def normalise_topics(topics: Sequence[str]) -> tuple[str, ...]:
    """Topics as stored: each entry split at spaces, commas and semicolons, blanks and repeats dropped."""
    if isinstance(topics, str):  # a lone string is a sequence too, of characters
        topics = [topics]
    found: dict[str, None] = {}
    for entry in topics:
        for topic in _TOPIC_SEPARATORS.split(entry):
            if not topic:
                continue
            if len(topic) > MAX_TOPIC_LENGTH or not topic.isprintable():
                raise BadInput(f"a topic is at most {MAX_TOPIC_LENGTH} printable characters")
            found[topic] = None
    if len(found) > MAX_TOPICS:
        raise BadInput(f"at most {MAX_TOPICS} topics")
    return tuple(found)


def checked_pause(issues: int) -> int:
    # bool is an int too: True must not pause anyone for one issue by accident.
    if isinstance(issues, bool) or not isinstance(issues, int) or not 0 <= issues <= MAX_PAUSED_ISSUES:
        raise BadInput(f"a pause is 0 to {MAX_PAUSED_ISSUES} issues")
    return issues


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SubscriberStore:
    """`keys` is the channels' rule for what makes two addresses one subscriber (the service passes its
    channel registry's); `clock` returns the current UTC time; tests pass their own to check timestamps."""

    def __init__(
        self,
        database: Database,
        *,
        keys: AddressKeys = exact_key,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self._database = database
        self._keys = keys
        self._clock = clock

    async def subscribe(
        self,
        channel: str,
        address: str,
        *,
        topics: Sequence[str] = (),
        confirmed: bool = True,
        secret: str | None = None,
    ) -> tuple[Subscriber, bool]:
        """Make (channel, address) a subscriber: ACTIVE, or PENDING when `confirmed` is False (email
        sign-ups wait for their confirmation link). Returns the row and whether anything changed.

        A new row gets `topics`. A row that had left (unsubscribed, blocked, bounced) comes back, keeping
        its old topics unless new ones are given. An ACTIVE row stays as it is; a PENDING one becomes
        ACTIVE only when `confirmed`. A `secret` given (a robot's signing secret) replaces the stored one.
        """
        key = self._key(channel, address)
        wanted = normalise_topics(topics)
        try:
            return await self._subscribe(channel, address, key, wanted, confirmed, secret)
        except IntegrityError:
            # Another sign-up of the same address inserted its row after we looked: now we find it.
            return await self._subscribe(channel, address, key, wanted, confirmed, secret)

    async def confirm(self, channel: str, address: str) -> Subscriber | None:
        """PENDING -> ACTIVE. Returns the row when it is ACTIVE now (also if it already was), None when
        there is no such subscriber or they left meanwhile (an old confirmation link must not undo that)."""
        key = self._key(channel, address)
        activated = {"status": SubscriberStatus.ACTIVE.value, "confirmed_at": self._clock()}
        async with self._database.transaction("write") as connection:
            await _update(connection, channel, key, activated, only_from=(SubscriberStatus.PENDING,))
            row = await _find(connection, channel, key)
        if row is None or row.status != SubscriberStatus.ACTIVE:
            return None
        return _subscriber(row)

    async def unsubscribe(self, channel: str, address: str) -> bool:
        """-> UNSUBSCRIBED with left_at now, from any other status; False if there is no such subscriber
        or they had already unsubscribed (so repeating it changes nothing)."""
        return await self.set_status(channel, address, SubscriberStatus.UNSUBSCRIBED)

    async def set_status(self, channel: str, address: str, status: SubscriberStatus) -> bool:
        """Move a subscriber to `status`; True if it changed. Becoming ACTIVE sets confirmed_at and clears
        left_at; leaving (UNSUBSCRIBED, BLOCKED, BOUNCED) from ACTIVE or PENDING sets left_at."""
        key = self._key(channel, address)
        status = SubscriberStatus(status)
        async with self._database.transaction("write") as connection:
            row = await _find(connection, channel, key, for_update=True)
            if row is None or row.status == status:
                return False
            values: dict[str, Any] = {"status": status.value}
            now = self._clock()
            if status == SubscriberStatus.ACTIVE:
                values |= {"confirmed_at": now, "left_at": None}
            elif status == SubscriberStatus.PENDING:
                values |= {"left_at": None}
            elif row.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
                values |= {"left_at": now}
            await _update(connection, channel, key, values)
            return True

    async def set_topics(self, channel: str, address: str, topics: Sequence[str]) -> bool:
        """Replace a subscriber's topics; False if there is no such subscriber."""
        key = self._key(channel, address)
        wanted = list(normalise_topics(topics))
        async with self._database.transaction("write") as connection:
            return await _update(connection, channel, key, {"topics": wanted})

    async def set_preferences(
        self, channel: str, address: str, *, topics: Sequence[str], paused_issues: int | None = None
    ) -> Subscriber | None:
        """A reader's choices from their preference page, written together: their topics, and with
        `paused_issues` (0 resumes) how many of the next issues they skip. Returns the row as stored, None
        if there is no such subscriber. BadInput, with nothing written, for what `normalise_topics`
        refuses or a pause outside 0..MAX_PAUSED_ISSUES."""
        key = self._key(channel, address)
        values: dict[str, Any] = {"topics": list(normalise_topics(topics))}
        if paused_issues is not None:
            values["paused_issues"] = checked_pause(paused_issues)
        async with self._database.transaction("write") as connection:
            if not await _update(connection, channel, key, values):
                return None
            return _subscriber(await _found(connection, channel, key))

    async def seen(self, channel: str, address: str) -> bool:
        """They wrote to us now (WeChat: this opens the 48 h customer-service window); False if they are
        not a subscriber."""
        key = self._key(channel, address)
        async with self._database.transaction("write") as connection:
            return await _update(connection, channel, key, {"last_seen_at": self._clock()})

    async def seen_many(self, channel: str, times: Mapping[str, dt.datetime]) -> None:
        """Many `seen` in one transaction (address -> when), as a buffer of them writes its batch. A time
        never moves back (an older batch written late changes nothing); non-subscribers are left out."""
        params = [{"b_key": self._key(channel, address), "b_at": at} for address, at in times.items()]
        if not params:
            return
        s = core_table(SubscriberRow)
        statement = (
            update(s)
            .where(
                s.c.channel == channel,
                s.c.address_key == bindparam("b_key"),
                or_(s.c.last_seen_at.is_(None), s.c.last_seen_at < bindparam("b_at")),
            )
            .values(last_seen_at=bindparam("b_at"))
        )
        async with self._database.transaction("write") as connection:
            await connection.execute(statement, params)

    async def import_active(
        self, rows: Sequence[ImportRow | tuple[str, str, Sequence[str]]]
    ) -> builtins.list[ImportOutcome]:
        """Editors' bulk add: each row becomes ACTIVE, with its topics (and secret) when it has any, in
        transactions of IMPORT_BATCH rows. Someone who left stays out (LEFT): bringing a person back is a
        decision about one person (`subscribe`), not a side effect of an old list."""
        given = [row if isinstance(row, ImportRow) else ImportRow(*row) for row in rows]
        checked = [
            (
                row.channel,
                row.address,
                self._key(row.channel, row.address),
                normalise_topics(row.topics),
                row.secret,
            )
            for row in given
        ]
        outcomes: builtins.list[ImportOutcome] = []
        for start in range(0, len(checked), IMPORT_BATCH):
            batch = checked[start : start + IMPORT_BATCH]
            try:
                outcomes += await self._import_batch(batch)
            except IntegrityError:  # a sign-up of one of these addresses came in meanwhile: look again
                outcomes += await self._import_batch(batch)
        return outcomes

    async def plan_import(self, rows: Sequence[ImportRow]) -> builtins.list[ImportOutcome]:
        """What `import_active` would make of `rows` now, writing nothing (the console's preview). Stored
        rows are read IMPORT_BATCH keys per query, not one query per row; a row met earlier in the same
        list counts as stored the way the import would have stored it, so a repeat is not a second NEW."""
        checked = [
            (row.channel, self._key(row.channel, row.address), normalise_topics(row.topics), row.secret)
            for row in rows
        ]
        s = core_table(SubscriberRow)
        stored: dict[tuple[str, str], _Planned] = {}
        outcomes: builtins.list[ImportOutcome] = []
        now = self._clock()
        async with self._database.transaction("snapshot") as connection:
            for start in range(0, len(checked), IMPORT_BATCH):
                batch = checked[start : start + IMPORT_BATCH]
                by_channel: dict[str, set[str]] = {}
                for channel, key, _, _ in batch:
                    if (channel, key) not in stored:
                        by_channel.setdefault(channel, set()).add(key)
                for channel, keys in by_channel.items():
                    query = select(s.c.address_key, s.c.status, s.c.topics, s.c.secret).where(
                        s.c.channel == channel, s.c.address_key.in_(sorted(keys))
                    )
                    for found in await connection.execute(query):
                        stored[(channel, found.address_key)] = _Planned(
                            found.status, tuple(found.topics), found.secret
                        )
                for channel, key, topics, secret in batch:
                    row = stored.get((channel, key))
                    if row is None:
                        stored[(channel, key)] = _Planned(SubscriberStatus.ACTIVE.value, topics, secret)
                        outcomes.append(ImportOutcome.NEW)
                        continue
                    outcome, values = _import_change(row, topics, secret, now)
                    stored[(channel, key)] = _Planned(
                        values.get("status", row.status),
                        tuple(values.get("topics", row.topics)),
                        values.get("secret", row.secret),
                    )
                    outcomes.append(outcome)
        return outcomes

    async def purge_unconfirmed(self, older_than: dt.timedelta, *, channel: str) -> int:
        """Delete the sign-ups on `channel` never confirmed (email's double opt-in) whose last sign-up is
        more than `older_than` ago (the lifetime of the link it mailed): PENDING rows with no
        confirmed_at. A reader who had been ACTIVE and signed up again keeps their row, whatever its
        status. Returns how many rows went."""
        cutoff = self._clock() - older_than
        s = core_table(SubscriberRow)
        statement = delete(s).where(
            s.c.channel == channel,
            s.c.status == SubscriberStatus.PENDING.value,
            s.c.confirmed_at.is_(None),
            func.coalesce(s.c.last_seen_at, s.c.created_at) < cutoff,
        )
        async with self._database.transaction("write") as connection:
            return int((await connection.execute(statement)).rowcount)

    async def get(self, channel: str, address: str) -> Subscriber | None:
        key = self._key(channel, address)
        async with self._database.transaction() as connection:
            row = await _find(connection, channel, key)
        return None if row is None else _subscriber(row)

    async def get_by_id(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber a signed token names (bot/tokens.py carries ids, not addresses)."""
        s = core_table(SubscriberRow)
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(s).where(s.c.id == subscriber_id))).first()
        return None if row is None else _subscriber(row)

    async def search(
        self,
        query: str = "",
        *,
        channel: str | None = None,
        status: SubscriberStatus | None = None,
        topic: str | None = None,
        contains: bool = False,
        after_id: int = 0,
        limit: int = 50,
    ) -> SubscriberPage:
        """Subscribers in id order whose address_key (the channel's normalised spelling) begins with
        `query`, as typed or lowercased ("Reader@" finds reader@example.com), or holds it anywhere with
        `contains`; with `topic`, only those who chose it. A keyset page: `after_id` is the last id seen.

        A prefix is a LIKE 'q%' on the key, which an index on address_key can serve; `contains` reads the
        rows of the other filters until it has a page."""
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise BadInput(f"limit must be between 1 and {MAX_SEARCH_LIMIT}")
        if len(query) > MAX_ADDRESS_LENGTH or not query.isprintable():
            raise BadInput(f"a search is at most {MAX_ADDRESS_LENGTH} printable characters")
        s = core_table(SubscriberRow)
        statement = select(s).where(s.c.id > after_id)
        if query:
            spellings = dict.fromkeys((query, query.lower()))
            if contains:
                matches = [s.c.address_key.contains(text, autoescape=True) for text in spellings]
            else:
                matches = [s.c.address_key.startswith(text, autoescape=True) for text in spellings]
            statement = statement.where(or_(*matches))
        if channel is not None:
            statement = statement.where(s.c.channel == channel)
        if status is not None:
            statement = statement.where(s.c.status == SubscriberStatus(status).value)
        if topic:
            statement = statement.where(self._has_topic(s.c.topics, topic))
        async with self._database.transaction() as connection:
            rows = (await connection.execute(statement.order_by(s.c.id).limit(limit + 1))).all()
        found = tuple(_subscriber(row) for row in rows[:limit])
        return SubscriberPage(found, found[-1].id if len(rows) > limit else None)

    def _has_topic(self, topics: Any, topic: str) -> Any:
        """SQL: the JSON list `topics` holds `topic` (each backend has its own way to unnest JSON)."""
        if self._database.backend == "sqlite":
            elements = func.json_each(topics).table_valued("value")
        else:
            elements = func.json_array_elements_text(topics).table_valued("value")
        return exists(select(literal_column("1")).select_from(elements).where(elements.c.value == topic))

    async def history(self, subscriber_id: int, *, limit: int = HISTORY_LIMIT) -> History | None:
        """A subscriber with their times, their newest `limit` deliveries and clicks; None if there is none.
        Clicks are theirs only when they were recorded with JIANBAO_TRACK_SUBSCRIBERS on
        (storage/clicks.py); otherwise they are counted per link, never per reader, and there are none."""
        s, d, b = core_table(SubscriberRow), core_table(DeliveryRow), core_table(BroadcastRow)
        c, k = core_table(ClickRow), core_table(LinkRow)
        clicks = (
            select(k.c.issue_date, k.c.url, c.c.at, c.c.filtered)
            .join(k, k.c.token == c.c.token)
            .where(c.c.subscriber_id == subscriber_id)
            .order_by(c.c.id.desc())
            .limit(limit)
        )
        deliveries = (
            select(d.c.broadcast_id, b.c.issue_date, d.c.channel, d.c.state, d.c.sent_at, d.c.last_error)
            .join(b, b.c.id == d.c.broadcast_id)
            .where(d.c.subscriber_id == subscriber_id)
            .order_by(d.c.id.desc())
            .limit(limit)
        )
        async with self._database.transaction("snapshot") as connection:
            row = (await connection.execute(select(s).where(s.c.id == subscriber_id))).first()
            if row is None:
                return None
            records = (await connection.execute(deliveries)).all()
            clicked = (await connection.execute(clicks)).all()
        return History(
            subscriber=_subscriber(row),
            last_seen_at=None if row.last_seen_at is None else _as_utc(row.last_seen_at),
            bounces=row.bounces,
            deliveries=tuple(
                DeliveryRecord(
                    broadcast_id=record.broadcast_id,
                    issue_date=record.issue_date,
                    channel=record.channel,
                    state=record.state,
                    sent_at=None if record.sent_at is None else _as_utc(record.sent_at),
                    last_error=record.last_error,
                )
                for record in records
            ),
            clicks=tuple(
                ClickRecord(record.issue_date, record.url, _as_utc(record.at), record.filtered)
                for record in clicked
            ),
        )

    async def erase(self, channel: str, address: str, *, actor: str) -> bool:
        """Forget a person: see `erase_id`. False if (channel, address) is no subscriber."""
        key = self._key(channel, address)
        s = core_table(SubscriberRow)
        return await self._erase(and_(s.c.channel == channel, s.c.address_key == key), actor, address)

    async def erase_id(self, subscriber_id: int, *, actor: str) -> bool:
        """In one transaction: delete the subscriber (their deliveries and clicks go with them: the
        foreign keys cascade), replace their address and its key with ERASED in every text column of
        every table but UNTOUCHED_TABLES, and record ("erase", "subscriber ID", channel) for `actor` in the
        audit trail. False if there is no such subscriber."""
        return await self._erase(core_table(SubscriberRow).c.id == subscriber_id, actor, None)

    async def _erase(self, which: Any, actor: str, typed: str | None) -> bool:
        s = core_table(SubscriberRow)
        async with self._database.transaction("write") as connection:
            row = (await connection.execute(select(s).where(which).with_for_update())).first()
            if row is None:
                return False
            await connection.execute(delete(s).where(s.c.id == row.id))
            needles = [needle for needle in (row.address, row.address_key, typed) if needle]
            await _redact(connection, needles)
            subject = subscriber_subject(row.id)
            await append_entry(connection, self._clock(), actor, "erase", subject, row.channel)
        return True

    async def list(
        self,
        *,
        channel: str | None = None,
        status: SubscriberStatus | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> builtins.list[Subscriber]:
        """Subscribers in id order, `limit` at a time; pass the last id seen as `after_id` for more."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise BadInput(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        s = core_table(SubscriberRow)
        query = select(s).where(s.c.id > after_id)
        if channel is not None:
            query = query.where(s.c.channel == channel)
        if status is not None:
            query = query.where(s.c.status == SubscriberStatus(status).value)
        async with self._database.transaction() as connection:
            rows = (await connection.execute(query.order_by(s.c.id).limit(limit))).all()
        return [_subscriber(row) for row in rows]

    async def count(self, *, channel: str | None = None, status: SubscriberStatus | None = None) -> int:
        s = core_table(SubscriberRow)
        query = select(func.count()).select_from(s)
        if channel is not None:
            query = query.where(s.c.channel == channel)
        if status is not None:
            query = query.where(s.c.status == SubscriberStatus(status).value)
        async with self._database.transaction() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def secret(self, subscriber_id: int) -> str | None:
        """The credential kept with a subscriber's address (what a sender signs with), if any."""
        s = core_table(SubscriberRow)
        async with self._database.transaction() as connection:
            found = await connection.execute(select(s.c.secret).where(s.c.id == subscriber_id))
            secret: str | None = found.scalar_one_or_none()
        return secret

    async def _subscribe(
        self,
        channel: str,
        address: str,
        key: str,
        topics: tuple[str, ...],
        confirmed: bool,
        secret: str | None,
    ) -> tuple[Subscriber, bool]:
        now = self._clock()
        status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
        async with self._database.transaction("write") as connection:
            # FOR UPDATE: on PostgreSQL a concurrent change of this subscriber waits until we commit.
            row = await _find(connection, channel, key, for_update=True)
            if row is None:
                await _insert(
                    connection, channel, address, key, topics, now, confirmed=confirmed, secret=secret
                )
                return _subscriber(await _found(connection, channel, key)), True
            # The secret given replaces the stored one whatever else happens (it goes with the UPDATE below
            # when there is one), but on its own it is not a change the caller is told about.
            values: dict[str, Any] = {}
            if secret is not None and row.secret != secret:
                values["secret"] = secret
            if row.status in _GONE or (row.status == SubscriberStatus.PENDING and confirmed):
                values |= {"status": status.value, "left_at": None}
                if confirmed:
                    values["confirmed_at"] = now
                else:
                    values["last_seen_at"] = now  # the sign-up its confirmation link dates from
                if topics:
                    values["topics"] = list(topics)
                await _update(connection, channel, key, values)
                return _subscriber(await _found(connection, channel, key)), True
            if row.status == SubscriberStatus.PENDING:
                # Asked again: a new confirmation link may go out, so the row must outlive it too.
                values["last_seen_at"] = now
            if values:
                await _update(connection, channel, key, values)
            return _subscriber(row), False

    async def _import_batch(
        self, batch: builtins.list[tuple[str, str, str, tuple[str, ...], str | None]]
    ) -> builtins.list[ImportOutcome]:
        now = self._clock()
        outcomes = []
        async with self._database.transaction("write") as connection:
            for channel, address, key, topics, secret in batch:
                row = await _find(connection, channel, key, for_update=True)
                if row is None:
                    await _insert(
                        connection, channel, address, key, topics, now, confirmed=True, secret=secret
                    )
                    outcomes.append(ImportOutcome.NEW)
                    continue
                outcome, values = _import_change(row, topics, secret, now)
                if values:
                    await _update(connection, channel, key, values)
                outcomes.append(outcome)
        return outcomes

    def _key(self, channel: str, address: str) -> str:
        """The unique key of (channel, address), after the checks every caller gets (the formats are the
        channels' business: channels.registry.check_address)."""
        if not channel or len(channel) > NAME_LENGTH or not channel.isidentifier():
            raise BadInput(f"a channel name is 1-{NAME_LENGTH} letters, digits and _")
        if not address or len(address) > MAX_ADDRESS_LENGTH or not address.isprintable():
            raise BadInput(f"an address is 1-{MAX_ADDRESS_LENGTH} printable characters")
        return self._keys(channel, address)


class _Planned(NamedTuple):
    """What an import decision reads of a stored row (a Row of the table, or plan_import's own)."""

    status: str
    topics: Sequence[str]
    secret: str | None


def _import_change(
    row: _Planned | Row[Any], topics: tuple[str, ...], secret: str | None, now: dt.datetime
) -> tuple[ImportOutcome, dict[str, Any]]:
    """An import's decision for a row already stored, and the values to write (none for LEFT and
    UNCHANGED): one rule for `import_active` and `plan_import`."""
    if row.status in _GONE:
        return ImportOutcome.LEFT, {}
    values: dict[str, Any] = {}
    if row.status == SubscriberStatus.PENDING:
        values |= {"status": SubscriberStatus.ACTIVE.value, "confirmed_at": now}
    if topics and tuple(row.topics) != topics:
        values["topics"] = list(topics)
    if secret is not None and row.secret != secret:
        values["secret"] = secret
    return (ImportOutcome.UPDATED if values else ImportOutcome.UNCHANGED), values


async def _find(
    connection: AsyncConnection, channel: str, key: str, *, for_update: bool = False
) -> Row[Any] | None:
    s = core_table(SubscriberRow)
    query = select(s).where(s.c.channel == channel, s.c.address_key == key)
    if for_update:
        query = query.with_for_update()
    return (await connection.execute(query)).first()


async def _found(connection: AsyncConnection, channel: str, key: str) -> Row[Any]:
    """The row just written in this transaction, read again: what the caller gets back is what is stored."""
    row = await _find(connection, channel, key)
    assert row is not None  # written above, in the same transaction
    return row


async def _update(
    connection: AsyncConnection,
    channel: str,
    key: str,
    values: dict[str, Any],
    *,
    only_from: tuple[SubscriberStatus, ...] = (),
) -> bool:
    s = core_table(SubscriberRow)
    statement = update(s).where(s.c.channel == channel, s.c.address_key == key)
    if only_from:
        statement = statement.where(s.c.status.in_([status.value for status in only_from]))
    result = await connection.execute(statement.values(**values))
    return result.rowcount > 0


def _subscriber(row: Row[Any]) -> Subscriber:
    return Subscriber(
        id=row.id,
        channel=row.channel,
        address=row.address,
        status=SubscriberStatus(row.status),
        topics=tuple(row.topics),
        created_at=_as_utc(row.created_at),
        confirmed_at=None if row.confirmed_at is None else _as_utc(row.confirmed_at),
        left_at=None if row.left_at is None else _as_utc(row.left_at),
        address_key=row.address_key,
        paused_issues=row.paused_issues,
    )


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone: what it returns is the UTC time it was given, without tzinfo.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


async def _insert(
    connection: AsyncConnection,
    channel: str,
    address: str,
    key: str,
    topics: Sequence[str],
    now: dt.datetime,
    *,
    confirmed: bool,
    secret: str | None = None,
) -> None:
    """A new subscriber: ACTIVE when confirmed (or not needing it), else PENDING its double opt-in."""
    await connection.execute(
        insert(core_table(SubscriberRow)).values(
            channel=channel,
            address=address,
            address_key=key,
            status=(SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING).value,
            topics=list(topics),
            created_at=now,
            confirmed_at=now if confirmed else None,
            secret=secret,
        )
    )


# --- erasure ----------------------------------------------------------------------------------------------

# Letters and digits around a match make it part of something else ("4242" inside "142420"): only the
# address standing on its own is cut, so short ids do not mangle other numbers.
_WORD = "0-9A-Za-z"


async def _redact(connection: AsyncConnection, needles: Sequence[str]) -> None:
    """Replace each needle (an address, its key), in any case, with ERASED in the text columns of every
    table but UNTOUCHED_TABLES, read from the live schema (so tables added later are searched too).
    Primary keys are left alone: they are names the service chooses, not where it writes addresses.
    One scan per table finds the values; each distinct value is then rewritten where it stands."""
    wanted = sorted(dict.fromkeys(needles), key=len, reverse=True)
    pattern = re.compile(rf"(?<![{_WORD}])(?:{'|'.join(map(re.escape, wanted))})(?![{_WORD}])", re.IGNORECASE)
    spellings = list(dict.fromkeys([*wanted, *(needle.lower() for needle in wanted)]))
    for name, columns in await connection.run_sync(_text_columns):
        place = table(name, *(column(text) for text in columns))
        found = or_(
            *(
                func.lower(place.c[text]).contains(spelling.lower(), autoescape=True)
                | place.c[text].contains(spelling, autoescape=True)
                for text in columns
                for spelling in spellings
            )
        )
        rows = (await connection.execute(select(*place.c).where(found))).all()
        rewrites = {
            (text, value): pattern.sub(ERASED, value)
            for row in rows
            for text, value in row._mapping.items()
            if isinstance(value, str)
        }
        for (text, old), new in rewrites.items():
            if new != old:
                await connection.execute(update(place).where(place.c[text] == old).values({text: new}))


def _text_columns(connection: Connection) -> builtins.list[tuple[str, builtins.list[str]]]:
    """(table, its non-key text columns) for each table an erasure searches."""
    inspector = inspect(connection)
    found = []
    for name in inspector.get_table_names():
        if name in UNTOUCHED_TABLES:
            continue
        keys = set(inspector.get_pk_constraint(name)["constrained_columns"])
        texts = [
            info["name"]
            for info in inspector.get_columns(name)
            if isinstance(info["type"], String) and info["name"] not in keys
        ]
        if texts:
            found.append((name, texts))
    return found
