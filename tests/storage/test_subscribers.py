from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

import storage.subscribers
from channels.registry import channel_registry
from content.errors import BadInput
from storage.database import Database
from storage.issues import IssueStore
from storage.migrate import alembic_config, current_revision, head_revision
from storage.subscribers import (
    MAX_TOPICS,
    ImportOutcome,
    SubscriberStatus,
    SubscriberStore,
    normalise_topics,
)
from tests.storage.sample_issues import sample_issue

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"  # the shape of WeChat's documented sample openids: 28 characters


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def subscribers(db: Database, clock: Clock) -> SubscriberStore:
    # The service's rule for what makes two addresses one subscriber (emails case-insensitively).
    return SubscriberStore(db, keys=channel_registry().address_key, clock=clock)


# --- subscribe


async def test_subscribe_creates_an_active_subscriber(subscribers: SubscriberStore) -> None:
    row, changed = await subscribers.subscribe("telegram", "123456789", topics=["量化", "NPU"])

    assert changed
    assert (row.channel, row.address, row.status) == ("telegram", "123456789", SubscriberStatus.ACTIVE)
    assert row.topics == ("量化", "NPU")
    assert (row.created_at, row.confirmed_at, row.left_at) == (T0, T0, None)
    assert await subscribers.get("telegram", "123456789") == row


async def test_unconfirmed_subscribe_is_pending(subscribers: SubscriberStore) -> None:
    row, changed = await subscribers.subscribe("email", "reader@example.com", confirmed=False)

    assert changed
    assert row.status == SubscriberStatus.PENDING
    assert row.confirmed_at is None


async def test_subscribing_an_active_subscriber_changes_nothing(
    subscribers: SubscriberStore, clock: Clock
) -> None:
    first, _ = await subscribers.subscribe("wechat", OPENID, topics=["量化"])
    clock.advance(days=1)

    again, changed = await subscribers.subscribe("wechat", OPENID, topics=["剪枝"])
    pending_again, pending_changed = await subscribers.subscribe("wechat", OPENID, confirmed=False)

    assert not changed
    assert not pending_changed
    assert again == pending_again == first


async def test_emails_compare_case_insensitively_and_keep_their_spelling(
    subscribers: SubscriberStore,
) -> None:
    row, _ = await subscribers.subscribe("email", "Reader.Name@Example.COM")

    same, changed = await subscribers.subscribe("email", "reader.name@example.com")

    assert not changed
    assert same.id == row.id
    assert same.address == "Reader.Name@Example.COM"
    assert await subscribers.get("email", "READER.NAME@EXAMPLE.COM") == row
    assert await subscribers.count() == 1


async def test_the_same_address_on_two_channels_is_two_subscribers(subscribers: SubscriberStore) -> None:
    telegram, _ = await subscribers.subscribe("telegram", "12345")
    wechat, _ = await subscribers.subscribe("wechat", "12345")

    assert telegram.id != wechat.id
    assert await subscribers.count() == 2


async def test_a_pending_subscriber_confirmed_elsewhere_becomes_active(
    subscribers: SubscriberStore, clock: Clock
) -> None:
    await subscribers.subscribe("email", "reader@example.com", confirmed=False)
    later = clock.advance(hours=1)

    row, changed = await subscribers.subscribe("email", "reader@example.com")

    assert changed
    assert (row.status, row.confirmed_at) == (SubscriberStatus.ACTIVE, later)


@pytest.mark.parametrize(
    "gone", [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BLOCKED, SubscriberStatus.BOUNCED]
)
async def test_subscribe_brings_back_a_subscriber_who_left(
    subscribers: SubscriberStore, clock: Clock, gone: SubscriberStatus
) -> None:
    first, _ = await subscribers.subscribe("telegram", "-1001234567890", topics=["量化"])
    clock.advance(days=1)
    assert await subscribers.set_status("telegram", "-1001234567890", gone)
    back_at = clock.advance(days=30)

    row, changed = await subscribers.subscribe("telegram", "-1001234567890")

    assert changed
    assert row.id == first.id
    assert (row.status, row.confirmed_at, row.left_at) == (SubscriberStatus.ACTIVE, back_at, None)
    assert row.created_at == T0
    assert row.topics == ("量化",)  # no new topics given: the old ones stay


async def test_a_returning_email_subscriber_must_confirm_again(subscribers: SubscriberStore) -> None:
    await subscribers.subscribe("email", "reader@example.com", topics=["量化"])
    await subscribers.unsubscribe("email", "reader@example.com")

    row, changed = await subscribers.subscribe("email", "reader@example.com", topics=["NPU"], confirmed=False)

    assert changed
    assert row.status == SubscriberStatus.PENDING
    assert row.topics == ("NPU",)


async def test_concurrent_sign_ups_of_one_address_make_one_row(subscribers: SubscriberStore) -> None:
    results = await asyncio.gather(
        *(
            subscribers.subscribe("email", "Reader@example.com" if n % 2 else "reader@example.com")
            for n in range(6)
        )
    )

    assert len({row.id for row, _ in results}) == 1
    assert sum(changed for _, changed in results) == 1
    assert await subscribers.count() == 1


# --- confirm, unsubscribe, status, topics


async def test_confirm_activates_a_pending_subscriber(subscribers: SubscriberStore, clock: Clock) -> None:
    await subscribers.subscribe("email", "reader@example.com", confirmed=False)
    confirmed_at = clock.advance(minutes=5)

    row = await subscribers.confirm("email", "Reader@Example.com")
    clock.advance(minutes=5)
    again = await subscribers.confirm("email", "reader@example.com")

    assert row is not None
    assert (row.status, row.confirmed_at) == (SubscriberStatus.ACTIVE, confirmed_at)
    assert again == row  # a second click finds it active and leaves it as it was


async def test_confirm_does_not_bring_back_someone_who_left(subscribers: SubscriberStore) -> None:
    await subscribers.subscribe("email", "reader@example.com", confirmed=False)
    await subscribers.unsubscribe("email", "reader@example.com")

    assert await subscribers.confirm("email", "reader@example.com") is None
    assert await subscribers.confirm("email", "nobody@example.com") is None
    row = await subscribers.get("email", "reader@example.com")
    assert row is not None
    assert row.status == SubscriberStatus.UNSUBSCRIBED


async def test_unsubscribe_sets_left_at_once(subscribers: SubscriberStore, clock: Clock) -> None:
    await subscribers.subscribe("telegram", "42")
    left_at = clock.advance(days=3)

    assert await subscribers.unsubscribe("telegram", "42")
    clock.advance(days=3)
    assert not await subscribers.unsubscribe("telegram", "42")
    assert not await subscribers.unsubscribe("telegram", "43")

    row = await subscribers.get("telegram", "42")
    assert row is not None
    assert (row.status, row.left_at, row.confirmed_at) == (SubscriberStatus.UNSUBSCRIBED, left_at, T0)


async def test_a_pending_sign_up_can_be_cancelled(subscribers: SubscriberStore) -> None:
    await subscribers.subscribe("email", "reader@example.com", confirmed=False)

    assert await subscribers.unsubscribe("email", "reader@example.com")


async def test_set_status_reports_whether_it_changed(subscribers: SubscriberStore, clock: Clock) -> None:
    await subscribers.subscribe("wechat", OPENID)
    blocked_at = clock.advance(hours=2)

    assert await subscribers.set_status("wechat", OPENID, SubscriberStatus.BLOCKED)
    clock.advance(hours=2)
    assert not await subscribers.set_status("wechat", OPENID, SubscriberStatus.BLOCKED)
    # Leaving again from one gone status to another keeps the time they left.
    assert await subscribers.set_status("wechat", OPENID, SubscriberStatus.UNSUBSCRIBED)
    assert not await subscribers.set_status("wechat", "o" * 28, SubscriberStatus.BLOCKED)

    row = await subscribers.get("wechat", OPENID)
    assert row is not None
    assert (row.status, row.left_at) == (SubscriberStatus.UNSUBSCRIBED, blocked_at)


async def test_set_topics_replaces_them(subscribers: SubscriberStore) -> None:
    await subscribers.subscribe("telegram", "42", topics=["量化"])

    assert await subscribers.set_topics("telegram", "42", ["NPU, 剪枝", "NPU"])
    assert not await subscribers.set_topics("telegram", "43", ["NPU"])

    row = await subscribers.get("telegram", "42")
    assert row is not None
    assert row.topics == ("NPU", "剪枝")


# --- purging sign-ups never confirmed

LINK_LIFETIME = dt.timedelta(days=7)


async def test_purge_deletes_only_unconfirmed_sign_ups_whose_link_has_expired(
    subscribers: SubscriberStore, clock: Clock
) -> None:
    await subscribers.subscribe("email", "stale@example.com", confirmed=False)
    await subscribers.subscribe("email", "asked-again@example.com", confirmed=False)
    await subscribers.subscribe("email", "came-back@example.com", confirmed=False)
    await subscribers.unsubscribe("email", "came-back@example.com")
    await subscribers.subscribe("email", "returning@example.com")
    await subscribers.unsubscribe("email", "returning@example.com")
    await subscribers.subscribe("email", "returning@example.com", confirmed=False)  # had been ACTIVE
    await subscribers.subscribe("email", "cancelled@example.com", confirmed=False)
    await subscribers.unsubscribe("email", "cancelled@example.com")
    for status in (SubscriberStatus.ACTIVE, SubscriberStatus.BLOCKED, SubscriberStatus.BOUNCED):
        await subscribers.subscribe("email", f"{status}@example.com")
        await subscribers.set_status("email", f"{status}@example.com", status)
    await subscribers.subscribe("telegram", "42", confirmed=False)  # not an email sign-up
    clock.advance(days=6)
    # A new sign-up of a pending address mails a new link: the row must live as long as that link.
    await subscribers.subscribe("email", "asked-again@example.com", confirmed=False)
    await subscribers.subscribe("email", "came-back@example.com", confirmed=False)
    clock.advance(days=1, seconds=1)
    await subscribers.subscribe("email", "fresh@example.com", confirmed=False)
    before = {row.address: row for row in await subscribers.list()}

    purged = await subscribers.purge_unconfirmed(LINK_LIFETIME, channel="email")

    after = {row.address: row for row in await subscribers.list()}
    assert purged == 1
    assert set(before) - set(after) == {"stale@example.com"}
    assert all(after[address] == before[address] for address in after)  # the others untouched
    assert after["returning@example.com"].status == SubscriberStatus.PENDING
    assert await subscribers.purge_unconfirmed(LINK_LIFETIME, channel="email") == 0


async def test_a_link_still_valid_keeps_its_sign_up(subscribers: SubscriberStore, clock: Clock) -> None:
    await subscribers.subscribe("email", "reader@example.com", confirmed=False)
    clock.advance(days=7)  # the link expires only after this moment

    assert await subscribers.purge_unconfirmed(LINK_LIFETIME, channel="email") == 0
    clock.advance(seconds=1)
    assert await subscribers.purge_unconfirmed(LINK_LIFETIME, channel="email") == 1
    assert await subscribers.get("email", "reader@example.com") is None
    # The address may sign up afresh.
    row, changed = await subscribers.subscribe("email", "reader@example.com", confirmed=False)
    assert changed
    assert row.status == SubscriberStatus.PENDING


# --- import


async def test_import_makes_active_subscribers_and_keeps_out_who_left(
    subscribers: SubscriberStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.subscribers, "IMPORT_BATCH", 2)  # several transactions for a few rows
    await subscribers.subscribe("email", "pending@example.com", confirmed=False)
    await subscribers.subscribe("telegram", "42", topics=["量化"])
    await subscribers.subscribe("telegram", "43")
    await subscribers.unsubscribe("telegram", "43")
    imported_at = clock.advance(days=1)

    outcomes = await subscribers.import_active(
        [
            ("email", "new@example.com", ["NPU"]),
            ("email", "NEW@example.com", []),  # the same reader again, within the import
            ("email", "pending@example.com", []),
            ("telegram", "42", []),  # no topics given: theirs stay
            ("telegram", "42", ["剪枝"]),
            ("telegram", "43", []),
        ]
    )

    assert outcomes == [
        ImportOutcome.NEW,
        ImportOutcome.UNCHANGED,
        ImportOutcome.UPDATED,
        ImportOutcome.UNCHANGED,
        ImportOutcome.UPDATED,
        ImportOutcome.LEFT,
    ]
    new = await subscribers.get("email", "new@example.com")
    pending = await subscribers.get("email", "pending@example.com")
    topical = await subscribers.get("telegram", "42")
    left = await subscribers.get("telegram", "43")
    assert new is not None
    assert (new.status, new.topics, new.confirmed_at) == (SubscriberStatus.ACTIVE, ("NPU",), imported_at)
    assert pending is not None
    assert (pending.status, pending.confirmed_at) == (SubscriberStatus.ACTIVE, imported_at)
    assert topical is not None
    assert topical.topics == ("剪枝",)
    assert left is not None
    assert left.status == SubscriberStatus.UNSUBSCRIBED


async def test_an_import_with_a_bad_row_writes_nothing(subscribers: SubscriberStore) -> None:
    with pytest.raises(BadInput):
        await subscribers.import_active([("telegram", "42", []), ("no such channel", "1", [])])
    assert await subscribers.count() == 0


# --- reading


async def test_list_filters_and_pages_in_id_order(subscribers: SubscriberStore) -> None:
    for n in range(5):
        await subscribers.subscribe("telegram", str(100 + n))
    await subscribers.subscribe("email", "reader@example.com", confirmed=False)
    await subscribers.unsubscribe("telegram", "101")

    everyone = await subscribers.list()
    active_telegram = await subscribers.list(channel="telegram", status=SubscriberStatus.ACTIVE)
    first_page = await subscribers.list(limit=2)
    second_page = await subscribers.list(after_id=first_page[-1].id, limit=2)

    assert [row.id for row in everyone] == sorted(row.id for row in everyone)
    assert len(everyone) == 6
    assert [row.address for row in active_telegram] == ["100", "102", "103", "104"]
    assert first_page + second_page == everyone[:4]
    assert await subscribers.count() == 6
    assert await subscribers.count(channel="telegram", status=SubscriberStatus.ACTIVE) == 4
    assert await subscribers.count(status=SubscriberStatus.PENDING) == 1
    assert await subscribers.count(channel="wechat") == 0


async def test_get_by_id(subscribers: SubscriberStore) -> None:
    row, _ = await subscribers.subscribe("email", "reader@example.com")

    assert await subscribers.get_by_id(row.id) == row
    assert await subscribers.get_by_id(row.id + 1) is None


# --- bad input


@pytest.mark.parametrize(
    ("channel", "address"),
    [
        ("no such channel", "+8613800000000"),  # not a name a channel can have
        ("a_channel_name_too_long", "42"),
        ("", "42"),
        ("telegram", ""),
        ("email", "a@b.c\nBcc: x@example.com"),
        ("email", "x" * 250 + "@example.com"),
    ],
)
async def test_the_store_refuses_what_no_channel_can_hold(
    subscribers: SubscriberStore, channel: str, address: str
) -> None:
    with pytest.raises(BadInput):
        await subscribers.subscribe(channel, address)
    with pytest.raises(BadInput):
        await subscribers.get(channel, address)
    assert await subscribers.count() == 0


async def test_the_store_refuses_too_many_topics(subscribers: SubscriberStore) -> None:
    with pytest.raises(BadInput, match="topics"):
        await subscribers.subscribe("telegram", "42", topics=[f"t{n}" for n in range(MAX_TOPICS + 1)])
    assert await subscribers.count() == 0


def test_normalise_topics() -> None:
    assert normalise_topics(["量化 剪枝", "NPU;量化", " ，蒸馏、 "]) == ("量化", "剪枝", "NPU", "蒸馏")
    assert normalise_topics("量化,NPU") == ("量化", "NPU")
    assert normalise_topics([]) == ()
    with pytest.raises(BadInput):
        normalise_topics(["x" * 33])


# --- migration 0002


def table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migration_0002_goes_down_to_0001_and_up_again_keeping_the_issues(db: Database) -> None:
    issue, source = sample_issue(dt.date(2021, 7, 18))
    await IssueStore(db).save(issue, source)
    await SubscriberStore(db).subscribe("telegram", "42")

    def downgrade_to_0001(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), "0001")

    async with db.engine.connect() as connection:
        await connection.run_sync(downgrade_to_0001)
        assert await connection.run_sync(current_revision) == "0001"
        assert {"subscriber", "link"}.isdisjoint(await connection.run_sync(table_names))
    await db.migrate()

    async with db.engine.connect() as connection:
        assert await connection.run_sync(current_revision) == head_revision()
        assert {"subscriber", "link"} <= await connection.run_sync(table_names)
    assert await IssueStore(db).get(issue.date) == issue
    assert await SubscriberStore(db).count() == 0


def test_statuses_fit_the_status_column() -> None:
    assert max(len(status) for status in SubscriberStatus) <= 16
