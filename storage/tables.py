"""The database tables that hold issues: one row per issue, section and item.

Types are the portable ones (JSON, Text, Date, timestamp with time zone) so that SQLite and PostgreSQL store
and return the same values. Constraints carry explicit names because Alembic can only alter or drop a named
constraint, and SQLite's batch migrations rebuild tables by those names.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlmodel import Field, SQLModel

# A sha256 digest in hex.
CONTENT_HASH_LENGTH = 64
EDITOR_NAME_LENGTH = 64
# argon2's encoded hashes are about 100 characters with the default parameters; room for stronger ones.
PASSWORD_HASH_LENGTH = 255


class IssueRow(SQLModel, table=True):
    __tablename__ = "issue"
    __table_args__ = (UniqueConstraint("date", name="uq_issue_date"),)

    id: int | None = Field(default=None, primary_key=True)
    date: dt.date
    title: str = Field(sa_type=Text)
    headline: str | None = Field(default=None, sa_type=Text)
    tagline: str | None = Field(default=None, sa_type=Text)
    lead: str | None = Field(default=None, sa_type=Text)
    # JSON rather than JSONB on PostgreSQL: json keeps text as given, so dict key order (the document order
    # of an item's fields) survives the round trip.
    notes: list[str] = Field(default_factory=list, sa_type=JSON)
    quick_news: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    references: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    source_path: str | None = Field(default=None, sa_type=Text)
    content_hash: str = Field(sa_type=String(CONTENT_HASH_LENGTH))
    source_text: str = Field(sa_type=Text)
    imported_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    updated_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


class SectionRow(SQLModel, table=True):
    __tablename__ = "section"
    __table_args__ = (
        ForeignKeyConstraint(
            ["issue_id"], ["issue.id"], ondelete="CASCADE", name="fk_section_issue_id_issue"
        ),
        UniqueConstraint("issue_id", "position", name="uq_section_issue_id_position"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int
    position: int
    name: str = Field(sa_type=Text)


class ItemRow(SQLModel, table=True):
    __tablename__ = "item"
    __table_args__ = (
        ForeignKeyConstraint(["issue_id"], ["issue.id"], ondelete="CASCADE", name="fk_item_issue_id_issue"),
        ForeignKeyConstraint(
            ["section_id"], ["section.id"], ondelete="CASCADE", name="fk_item_section_id_section"
        ),
        UniqueConstraint("section_id", "position", name="uq_item_section_id_position"),
        Index("ix_item_issue_id", "issue_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int
    section_id: int
    position: int
    title: str = Field(sa_type=Text)
    source: str | None = Field(default=None, sa_type=Text)
    url: str | None = Field(default=None, sa_type=Text)
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    fields: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    summary: str = Field(default="", sa_type=Text)
    links: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)


def core_table(model: type[SQLModel]) -> Table:
    """The Core Table behind a table model, for statements the ORM would run row by row."""
    # SQLModel models have `__table__` at runtime but leave it out of their type hints.
    table = inspect(model).local_table
    assert isinstance(table, Table)
    return table


# The longest address any channel uses: an email address (RFC 5321 path limit).
MAX_ADDRESS_LENGTH = 254
# Channel names (channels/registry.py MAX_NAME_LENGTH) and subscriber statuses fit with room to spare.
NAME_LENGTH = 16
# A credential kept with an address (a Feishu robot's signing secret is a few dozen characters).
MAX_SECRET_LENGTH = 128
# Tracking tokens are 16 base32 characters (channels/links.py); the column leaves room for a longer form.
LINK_TOKEN_LENGTH = 32


class SubscriberRow(SQLModel, table=True):
    """One subscriber on one channel. `address` is kept as given; `address_key` is what makes two
    spellings the same subscriber (emails compare case-insensitively), and is what the unique key is on."""

    __tablename__ = "subscriber"
    __table_args__ = (
        UniqueConstraint("channel", "address_key", name="uq_subscriber_channel_address_key"),
        # Sending walks the active subscribers of one channel in id order.
        Index("ix_subscriber_channel_status_id", "channel", "status", "id"),
        # A broadcast's figures count who left and joined in the days after it (storage/broadcast_stats.py).
        Index("ix_subscriber_left_at", "left_at"),
        Index("ix_subscriber_created_at", "created_at"),
        # The desk's search by address prefix over every channel (the unique key begins with channel).
        Index("ix_subscriber_address_key", "address_key"),
        # Who left after a broadcast is counted on every view of its report: only the unsubscribed, by
        # time and channel, read from the index alone (18 ms -> 2.4 ms at 1M subscribers, 1.3% leaving).
        Index(
            "ix_subscriber_unsubscribed_left_at",
            "left_at",
            "channel",
            postgresql_where=text("status = 'unsubscribed'"),
            sqlite_where=text("status = 'unsubscribed'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(sa_type=String(NAME_LENGTH))
    address: str = Field(sa_type=String(MAX_ADDRESS_LENGTH))
    address_key: str = Field(sa_type=String(MAX_ADDRESS_LENGTH))
    status: str = Field(sa_type=String(NAME_LENGTH))
    topics: list[str] = Field(default_factory=list, sa_type=JSON)
    created_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    confirmed_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    left_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Hard bounces counted by broadcasts; at the configured number the subscriber becomes BOUNCED.
    bounces: int = 0
    # The last time they wrote to us (WeChat): customer-service messages reach only those within 48 h.
    last_seen_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # What some channels need beside the address to send to it (a Feishu robot's signing secret); never
    # shown in listings or exports.
    secret: str | None = Field(default=None, sa_type=String(MAX_SECRET_LENGTH))
    # Issues the reader asked to skip (the email preference page): each broadcast that starts while it
    # is above 0 skips them and counts it down (storage/broadcasts.py). A server default, so the column
    # is added to a large table without rewriting it, and rows written without it are not paused.
    paused_issues: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class LinkRow(SQLModel, table=True):
    """A tracking token of a sent issue and the URL it stands for; /r/{token} redirects only to these."""

    __tablename__ = "link"
    __table_args__ = (Index("ix_link_issue_date_channel", "issue_date", "channel"),)

    token: str = Field(sa_type=String(LINK_TOKEN_LENGTH), primary_key=True)
    channel: str = Field(sa_type=String(NAME_LENGTH))
    issue_date: dt.date
    url: str = Field(sa_type=Text)
    clicks: int = 0  # counted clicks: neither previews, scanners nor repeats (storage/clicks.py)
    unique_clicks: int = 0
    filtered_clicks: int = 0
    created_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


# Delivery ids: a million-subscriber broadcast a week outgrows 32 bits within decades; SQLite's rowid
# alias must be declared INTEGER to autoincrement, which is 64-bit there anyway.
DELIVERY_ID = BigInteger().with_variant(Integer(), "sqlite")
# Worker names: host:pid:random, see bot/broadcast/worker.py.
WORKER_NAME_LENGTH = 64
# Platform message ids: a Telegram message id per part, an email Message-ID, a WeChat msg_id.
MESSAGE_ID_LENGTH = 512


class BroadcastRow(SQLModel, table=True):
    """An editor's "send this issue": one per issue, holding the channels asked for and where it stands."""

    __tablename__ = "broadcast"
    __table_args__ = (UniqueConstraint("issue_date", name="uq_broadcast_issue_date"),)

    id: int | None = Field(default=None, primary_key=True)
    issue_date: dt.date
    channels: list[str] = Field(default_factory=list, sa_type=JSON)
    state: str = Field(sa_type=String(NAME_LENGTH))
    options: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    start_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    created_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    updated_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    finished_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DeliveryRow(SQLModel, table=True):
    """One message of a broadcast to one subscriber on one channel (or, kind "mass", WeChat's one mass
    send to all followers, which has no subscriber). The ledger is the queue: workers claim rows."""

    __tablename__ = "delivery"
    __table_args__ = (
        ForeignKeyConstraint(
            ["broadcast_id"], ["broadcast.id"], ondelete="CASCADE", name="fk_delivery_broadcast_id_broadcast"
        ),
        ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscriber.id"],
            ondelete="CASCADE",
            name="fk_delivery_subscriber_id_subscriber",
        ),
        UniqueConstraint(
            "broadcast_id", "channel", "subscriber_id", name="uq_delivery_broadcast_id_channel_subscriber_id"
        ),
        # Claiming walks one broadcast's pending rows of a channel in id order.
        Index("ix_delivery_claim", "broadcast_id", "channel", "state", "id"),
        # Reclaiming finds rows whose worker's lease ran out.
        Index("ix_delivery_state_lease_until", "state", "lease_until"),
        # A subscriber's history, newest first; the erasure's cascade; a reader's click finding its mail.
        Index("ix_delivery_subscriber_id_id", "subscriber_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=DELIVERY_ID)
    broadcast_id: int
    subscriber_id: int | None = None
    channel: str = Field(sa_type=String(NAME_LENGTH))
    kind: str = Field(sa_type=String(NAME_LENGTH))
    state: str = Field(sa_type=String(NAME_LENGTH))
    parts_done: int = 0
    attempts: int = 0
    uncertain: bool = Field(default=False, sa_type=Boolean)
    next_attempt_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    lease_until: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    worker: str | None = Field(default=None, sa_type=String(WORKER_NAME_LENGTH))
    last_error: str | None = Field(default=None, sa_type=Text)
    message_id: str | None = Field(default=None, sa_type=String(MESSAGE_ID_LENGTH))
    sent_at: dt.datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Why a FAILED delivery failed when the platform refused the subscriber: "blocked" or "bounced"
    # (storage/deliveries.py DeliveryOutcome); NULL otherwise.
    outcome: str | None = Field(default=None, sa_type=String(NAME_LENGTH))


class BroadcastTallyRow(SQLModel, table=True):
    """A finished broadcast's delivery figures per channel, counted once (storage/broadcast_stats.py), so
    that looking at them later reads a row per channel, not the broadcast's deliveries."""

    __tablename__ = "broadcast_tally"
    __table_args__ = (
        ForeignKeyConstraint(
            ["broadcast_id"],
            ["broadcast.id"],
            ondelete="CASCADE",
            name="fk_broadcast_tally_broadcast_id_broadcast",
        ),
    )

    broadcast_id: int = Field(primary_key=True)
    channel: str = Field(sa_type=String(NAME_LENGTH), primary_key=True)
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    bounced: int = 0
    skipped: int = 0
    uncertain: int = 0
    counted_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


class RateLimitRow(SQLModel, table=True):
    """A rate shared by every worker (GCRA): `tat` is the theoretical arrival time of the next send."""

    __tablename__ = "rate_limit"

    name: str = Field(sa_type=String(NAME_LENGTH * 2), primary_key=True)
    tat: dt.datetime = Field(sa_type=DateTime(timezone=True))


class EditorRow(SQLModel, table=True):
    """Someone who may use the console. The password is kept only as its hash (argon2, made by bot/)."""

    __tablename__ = "editor"
    __table_args__ = (UniqueConstraint("name", name="uq_editor_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(EDITOR_NAME_LENGTH))
    password_hash: str = Field(sa_type=String(PASSWORD_HASH_LENGTH))
    created_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


class EditorSessionRow(SQLModel, table=True):
    """A signed-in console session. Only a hash of the cookie's token is kept: a copy of the table signs
    nobody in."""

    __tablename__ = "editor_session"
    __table_args__ = (
        ForeignKeyConstraint(
            ["editor_id"], ["editor.id"], ondelete="CASCADE", name="fk_editor_session_editor_id_editor"
        ),
        Index("ix_editor_session_editor_id", "editor_id"),
    )

    token_hash: str = Field(sa_type=String(CONTENT_HASH_LENGTH), primary_key=True)
    editor_id: int = Field(sa_type=Integer)
    created_at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: dt.datetime = Field(sa_type=DateTime(timezone=True))


AUDIT_ACTOR_LENGTH = 64
AUDIT_ACTION_LENGTH = 32
AUDIT_SUBJECT_LENGTH = 200
AUDIT_DETAIL_LENGTH = 500


class AuditEntryRow(SQLModel, table=True):
    """Who did what to which issue or broadcast, and when: the console's audit trail. Only appended to."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_subject", "subject", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    actor: str = Field(sa_type=String(AUDIT_ACTOR_LENGTH))
    action: str = Field(sa_type=String(AUDIT_ACTION_LENGTH))
    subject: str = Field(sa_type=String(AUDIT_SUBJECT_LENGTH))
    detail: str = Field(sa_type=String(AUDIT_DETAIL_LENGTH), default="")


# Click ids: 64-bit like delivery ids (a click row per click of every reader of every issue).
CLICK_ID = BigInteger().with_variant(Integer(), "sqlite")
# The keyed hash naming a clicker (storage/clicks.py): 128 bits in hex.
CLICKER_LENGTH = 32
# "preview" | "scanner" | "repeat"
CLICK_FILTER_LENGTH = 16


class ClickRow(SQLModel, table=True):
    """One GET of /r/{token}: who (a keyed hash that rotates daily, never the address), when, and whether
    it counted. Only written by storage/clicks.py, in batches; the pages read the aggregates, not this."""

    __tablename__ = "click"
    __table_args__ = (
        ForeignKeyConstraint(["token"], ["link.token"], ondelete="CASCADE", name="fk_click_token_link"),
        Index("ix_click_token_at", "token", "at"),
        Index("ix_click_token_clicker_at", "token", "clicker", "at"),
        # Per-reader clicks (JIANBAO_TRACK_SUBSCRIBERS): an erased subscriber's clicks go with them.
        ForeignKeyConstraint(
            ["subscriber_id"], ["subscriber.id"], ondelete="CASCADE", name="fk_click_subscriber_id_subscriber"
        ),
        # A subscriber's clicks, newest first; the erasure's cascade.
        Index("ix_click_subscriber_id_id", "subscriber_id", "id"),
    )

    id: int | None = Field(default=None, sa_type=CLICK_ID, primary_key=True)
    token: str = Field(sa_type=String(LINK_TOKEN_LENGTH))
    at: dt.datetime = Field(sa_type=DateTime(timezone=True))
    clicker: str = Field(sa_type=String(CLICKER_LENGTH))
    counted: bool = Field(sa_type=Boolean)
    filtered: str | None = Field(default=None, sa_type=String(CLICK_FILTER_LENGTH))
    # Whose click, when their mail's link said so and per-reader clicks are on (storage/clicks.py); the
    # clicker is then "s:<id>". NULL otherwise.
    subscriber_id: int | None = None


class ClickHourRow(SQLModel, table=True):
    """Counted and unique clicks of one link in one hour, kept as clicks are recorded: the timeline."""

    __tablename__ = "click_hour"
    __table_args__ = (
        ForeignKeyConstraint(["token"], ["link.token"], ondelete="CASCADE", name="fk_click_hour_token_link"),
        Index("ix_click_hour_issue_date_hour", "issue_date", "hour"),
    )

    token: str = Field(sa_type=String(LINK_TOKEN_LENGTH), primary_key=True)
    hour: dt.datetime = Field(sa_type=DateTime(timezone=True), primary_key=True)
    issue_date: dt.date
    channel: str = Field(sa_type=String(NAME_LENGTH))
    clicks: int = 0
    unique_clicks: int = 0
