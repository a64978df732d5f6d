"""The subscribers of every channel in one table: who gets the newsletter where, and on which topics.

A subscriber is (channel, address): an email address, a Telegram chat id or a WeChat openid. The address is
kept as given; two spellings of one email address (Reader@Example.com, reader@example.com) are the same
subscriber because the unique key is on a normalised copy. Leaving is a status with a time (left_at), so a
later sign-up, a bounce report or an export knows the history. The one row the store deletes is an email
sign-up never confirmed whose link has expired (`purge_unconfirmed`): it is nobody's history, and
anyone can make such rows by filling in the form.

For an email sign-up, `last_seen_at` is when the address last asked to join: the confirmation link the
last sign-up mailed is dated from it (for WeChat it is the last message, which opens the reply window).

`check_address` and `normalise_topics` are the input rules of the command line and the sign-up form.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from content.errors import BadInput
from storage.database import Database
from storage.tables import MAX_ADDRESS_LENGTH, SubscriberRow

CHANNELS = ("wechat", "telegram", "email")
# Topic preferences: short labels (section names, keywords), a handful per subscriber.
MAX_TOPICS = 20
MAX_TOPIC_LENGTH = 32
MAX_LIST_LIMIT = 10_000
# Rows per transaction of an import: one commit (an fsync on SQLite) per row would make 10,000 rows take
# most of a minute.
IMPORT_BATCH = 500

# RFC 5321 4.5.3.1: local part <= 64 octets, whole path <= 254 usable characters. ASCII only: an
# internationalised address needs SMTPUTF8 all along the way, which we cannot promise.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_EMAIL_DOMAIN = re.compile(r"(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
# Telegram chat ids are signed 64-bit integers (groups and channels are negative).
_TELEGRAM_CHAT_ID = re.compile(r"-?[1-9][0-9]{0,18}")
# WeChat openids: 28 characters in practice; the documented alphabet is [A-Za-z0-9_-].
_WECHAT_OPENID = re.compile(r"[A-Za-z0-9_-]{28,64}")
_TOPIC_SEPARATORS = re.compile(r"[\s,;，；、]+")


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up by email, confirmation link not clicked yet
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"  # left on their own
    BLOCKED = "blocked"  # the platform refuses delivery (bot blocked, WeChat unfollowed)
    BOUNCED = "bounced"  # the mail server refuses delivery


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

    @property
    def address_key(self) -> str:
        return address_key(self.channel, self.address)


def address_key(channel: str, address: str) -> str:
    """What makes two addresses the same subscriber: emails compare case-insensitively, ids exactly."""
    return address.lower() if channel == "email" else address


def check_address(channel: str, address: str) -> str:
    """The address to store for what a person typed, or BadInput naming the rule it breaks."""
    _check_channel(channel)
    address = address.strip(" ")
    if channel == "email":
        if len(address) > MAX_ADDRESS_LENGTH:
            raise BadInput(f"an email address has at most {MAX_ADDRESS_LENGTH} characters")
        if not address.isascii() or not address.isprintable() or " " in address:
            raise BadInput("not a valid email address (one line, no spaces, ASCII, like name@example.com)")
        local, at, domain = address.partition("@")
        if not at or "@" in domain:
            raise BadInput("an email address has exactly one @")
        if not _EMAIL_LOCAL.fullmatch(local) or ".." in local or local.startswith(".") or local.endswith("."):
            raise BadInput("not a valid email address (one line, no spaces, ASCII, like name@example.com)")
        if not _EMAIL_DOMAIN.fullmatch(domain):
            raise BadInput("not a valid email address: the part after @ must be a domain like example.com")
        return address
    if channel == "telegram":
        if not _TELEGRAM_CHAT_ID.fullmatch(address) or not -(2**63) <= int(address) < 2**63:
            raise BadInput("a Telegram chat id is an integer, like 123456789 or -1001234567890")
        return address
    if not _WECHAT_OPENID.fullmatch(address):
        raise BadInput("a WeChat openid is 28-64 characters of A-Z, a-z, 0-9, _ and -")
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


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SubscriberStore:
    """`clock` returns the current UTC time; tests pass their own to check the timestamps."""

    def __init__(self, database: Database, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._database = database
        self._clock = clock

    async def subscribe(
        self, channel: str, address: str, *, topics: Sequence[str] = (), confirmed: bool = True
    ) -> tuple[Subscriber, bool]:
        """Make (channel, address) a subscriber: ACTIVE, or PENDING when `confirmed` is False (email
        sign-ups wait for their confirmation link). Returns the row and whether anything changed.

        A new row gets `topics`. A row that had left (unsubscribed, blocked, bounced) comes back, keeping
        its old topics unless new ones are given. An ACTIVE row stays as it is; a PENDING one becomes
        ACTIVE only when `confirmed`.
        """
        key = _checked_key(channel, address)
        wanted = normalise_topics(topics)
        try:
            return await self._subscribe(channel, address, key, wanted, confirmed)
        except IntegrityError:
            # Another sign-up of the same address inserted its row after we looked: now we find it.
            return await self._subscribe(channel, address, key, wanted, confirmed)

    async def confirm(self, channel: str, address: str) -> Subscriber | None:
        """PENDING -> ACTIVE. Returns the row when it is ACTIVE now (also if it already was), None when
        there is no such subscriber or they left meanwhile (an old confirmation link must not undo that)."""
        key = _checked_key(channel, address)
        async with self._database.session("write") as session, session.begin():
            activated = {"status": SubscriberStatus.ACTIVE, "confirmed_at": self._clock()}
            await self._update(session, channel, key, activated, only_from=(SubscriberStatus.PENDING,))
            row = await _find(session, channel, key)
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
        key = _checked_key(channel, address)
        status = SubscriberStatus(status)
        async with self._database.session("write") as session, session.begin():
            row = await _find(session, channel, key, for_update=True)
            if row is None or row.status == status:
                return False
            values: dict[str, Any] = {"status": status}
            now = self._clock()
            if status == SubscriberStatus.ACTIVE:
                values |= {"confirmed_at": now, "left_at": None}
            elif status == SubscriberStatus.PENDING:
                values |= {"left_at": None}
            elif row.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
                values |= {"left_at": now}
            await self._update(session, channel, key, values)
            return True

    async def set_topics(self, channel: str, address: str, topics: Sequence[str]) -> bool:
        """Replace a subscriber's topics; False if there is no such subscriber."""
        key = _checked_key(channel, address)
        wanted = list(normalise_topics(topics))
        async with self._database.session("write") as session, session.begin():
            return await self._update(session, channel, key, {"topics": wanted})

    async def seen(self, channel: str, address: str) -> bool:
        """They wrote to us now (WeChat: this opens the 48 h customer-service window); False if they are
        not a subscriber."""
        key = _checked_key(channel, address)
        async with self._database.session("write") as session, session.begin():
            return await self._update(session, channel, key, {"last_seen_at": self._clock()})

    async def import_active(
        self, rows: Sequence[tuple[str, str, Sequence[str]]]
    ) -> builtins.list[ImportOutcome]:
        """Editors' bulk add: each (channel, address, topics) becomes ACTIVE, with its topics when it has
        any, in transactions of IMPORT_BATCH rows. Someone who left stays out (LEFT): bringing a person
        back is a decision about one person (`subscribe`), not a side effect of an old list."""
        checked = [
            (channel, address, _checked_key(channel, address), normalise_topics(topics))
            for channel, address, topics in rows
        ]
        outcomes: builtins.list[ImportOutcome] = []
        for start in range(0, len(checked), IMPORT_BATCH):
            batch = checked[start : start + IMPORT_BATCH]
            try:
                outcomes += await self._import_batch(batch)
            except IntegrityError:  # a sign-up of one of these addresses came in meanwhile: look again
                outcomes += await self._import_batch(batch)
        return outcomes

    async def purge_unconfirmed(self, older_than: dt.timedelta) -> int:
        """Delete the email sign-ups never confirmed whose last sign-up is more than `older_than` ago (the
        lifetime of the link it mailed): PENDING rows with no confirmed_at. A reader who had been ACTIVE
        and signed up again keeps their row, whatever its status. Returns how many rows went."""
        cutoff = self._clock() - older_than
        last_sign_up = func.coalesce(col(SubscriberRow.last_seen_at), col(SubscriberRow.created_at))
        statement = delete(SubscriberRow).where(
            col(SubscriberRow.channel) == "email",
            col(SubscriberRow.status) == SubscriberStatus.PENDING,
            col(SubscriberRow.confirmed_at).is_(None),
            last_sign_up < cutoff,
        )
        async with self._database.session("write") as session, session.begin():
            result = await session.exec(statement.execution_options(synchronize_session=False))
            return int(result.rowcount)

    async def get(self, channel: str, address: str) -> Subscriber | None:
        key = _checked_key(channel, address)
        async with self._database.session() as session:
            row = await _find(session, channel, key)
            return None if row is None else _subscriber(row)

    async def get_by_id(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber a signed token names (bot/tokens.py carries ids, not addresses)."""
        async with self._database.session() as session:
            row = (
                await session.exec(select(SubscriberRow).where(col(SubscriberRow.id) == subscriber_id))
            ).first()
            return None if row is None else _subscriber(row)

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
        query = select(SubscriberRow).where(col(SubscriberRow.id) > after_id)
        if channel is not None:
            query = query.where(col(SubscriberRow.channel) == channel)
        if status is not None:
            query = query.where(col(SubscriberRow.status) == SubscriberStatus(status))
        async with self._database.session() as session:
            rows = (await session.exec(query.order_by(col(SubscriberRow.id)).limit(limit))).all()
            return [_subscriber(row) for row in rows]

    async def count(self, *, channel: str | None = None, status: SubscriberStatus | None = None) -> int:
        query = select(func.count()).select_from(SubscriberRow)
        if channel is not None:
            query = query.where(col(SubscriberRow.channel) == channel)
        if status is not None:
            query = query.where(col(SubscriberRow.status) == SubscriberStatus(status))
        async with self._database.session() as session:
            return (await session.exec(query)).one()

    async def _subscribe(
        self, channel: str, address: str, key: str, topics: tuple[str, ...], confirmed: bool
    ) -> tuple[Subscriber, bool]:
        now = self._clock()
        status = SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING
        async with self._database.session("write") as session, session.begin():
            # FOR UPDATE: on PostgreSQL a concurrent change of this subscriber waits until we commit.
            row = await _find(session, channel, key, for_update=True)
            if row is None:
                await _insert(session, channel, address, key, topics, now, confirmed=confirmed)
            elif row.status in _GONE or (row.status == SubscriberStatus.PENDING and confirmed):
                values: dict[str, Any] = {"status": status, "left_at": None}
                if confirmed:
                    values["confirmed_at"] = now
                else:
                    values["last_seen_at"] = now  # the sign-up its confirmation link dates from
                if topics:
                    values["topics"] = list(topics)
                await self._update(session, channel, key, values)
            elif row.status == SubscriberStatus.PENDING:
                # Asked again: a new confirmation link may go out, so the row must outlive it too.
                await self._update(session, channel, key, {"last_seen_at": now})
                return _subscriber(row), False
            else:
                return _subscriber(row), False
            found = await _find(session, channel, key)
            assert found is not None
            return _subscriber(found), True

    async def _import_batch(
        self, batch: builtins.list[tuple[str, str, str, tuple[str, ...]]]
    ) -> builtins.list[ImportOutcome]:
        now = self._clock()
        outcomes = []
        async with self._database.session("write") as session, session.begin():
            for channel, address, key, topics in batch:
                row = await _find(session, channel, key, for_update=True)
                if row is None:
                    await _insert(session, channel, address, key, topics, now, confirmed=True)
                    outcomes.append(ImportOutcome.NEW)
                    continue
                if row.status in _GONE:
                    outcomes.append(ImportOutcome.LEFT)
                    continue
                values: dict[str, Any] = {}
                if row.status == SubscriberStatus.PENDING:
                    values |= {"status": SubscriberStatus.ACTIVE, "confirmed_at": now}
                if topics and tuple(row.topics) != topics:
                    values["topics"] = list(topics)
                if values:
                    await self._update(session, channel, key, values)
                outcomes.append(ImportOutcome.UPDATED if values else ImportOutcome.UNCHANGED)
        return outcomes

    async def _update(
        self,
        session: AsyncSession,
        channel: str,
        key: str,
        values: dict[str, Any],
        *,
        only_from: tuple[SubscriberStatus, ...] = (),
    ) -> bool:
        statement = update(SubscriberRow).where(
            col(SubscriberRow.channel) == channel, col(SubscriberRow.address_key) == key
        )
        if only_from:
            statement = statement.where(col(SubscriberRow.status).in_(only_from))
        result = await session.exec(statement.values(**values).execution_options(synchronize_session=False))
        return result.rowcount > 0


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise BadInput(f"unknown channel {channel[:20]!r}: use one of {', '.join(CHANNELS)}")


def _checked_key(channel: str, address: str) -> str:
    """The unique key of (channel, address), after the checks every caller gets (the formats are the
    callers' business: check_address)."""
    _check_channel(channel)
    if not address or len(address) > MAX_ADDRESS_LENGTH or not address.isprintable():
        raise BadInput(f"an address is 1-{MAX_ADDRESS_LENGTH} printable characters")
    return address_key(channel, address)


async def _find(
    session: AsyncSession, channel: str, key: str, *, for_update: bool = False
) -> SubscriberRow | None:
    query = select(SubscriberRow).where(
        col(SubscriberRow.channel) == channel, col(SubscriberRow.address_key) == key
    )
    if for_update:
        query = query.with_for_update()
    # populate_existing: a row read again in the same session after an UPDATE shows the new values.
    return (await session.exec(query.execution_options(populate_existing=True))).first()


def _subscriber(row: SubscriberRow) -> Subscriber:
    assert row.id is not None  # rows read from the database always have their id
    return Subscriber(
        id=row.id,
        channel=row.channel,
        address=row.address,
        status=SubscriberStatus(row.status),
        topics=tuple(row.topics),
        created_at=_as_utc(row.created_at),
        confirmed_at=None if row.confirmed_at is None else _as_utc(row.confirmed_at),
        left_at=None if row.left_at is None else _as_utc(row.left_at),
    )


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone: what it returns is the UTC time it was given, without tzinfo.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


async def _insert(
    session: AsyncSession,
    channel: str,
    address: str,
    key: str,
    topics: Sequence[str],
    now: dt.datetime,
    *,
    confirmed: bool,
) -> None:
    """A new subscriber: ACTIVE when confirmed (or not needing it), else PENDING its double opt-in."""
    await session.exec(
        insert(SubscriberRow).values(
            channel=channel,
            address=address,
            address_key=key,
            status=SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
            topics=list(topics),
            created_at=now,
            confirmed_at=now if confirmed else None,
        )
    )
