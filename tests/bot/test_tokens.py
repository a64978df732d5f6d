from __future__ import annotations

import base64
import datetime as dt
import string
import struct

import pytest

from bot.tokens import CLOCK_SKEW, TOKEN_LENGTH, BadToken, Purpose, SubscriberTokens
from channels.registry import channel_registry
from storage.subscribers import Subscriber, SubscriberStatus

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
KEY = "a long random secret key for the tests"


def subscriber(subscriber_id: int, address: str, channel: str = "email") -> Subscriber:
    return Subscriber(
        id=subscriber_id,
        channel=channel,
        address=address,
        status=SubscriberStatus.ACTIVE,
        topics=(),
        created_at=NOW,
        confirmed_at=NOW,
        left_at=None,
        address_key=channel_registry().address_key(channel, address),  # as the store keeps it
    )


ALICE = subscriber(1, "alice@example.com")
BOB = subscriber(2, "bob@example.com")


class Rows:
    """The subscriber table, as far as tokens see it: rows by id."""

    def __init__(self, *rows: Subscriber) -> None:
        self.rows = {row.id: row for row in rows}
        self.lookups: list[int] = []

    async def get_by_id(self, subscriber_id: int) -> Subscriber | None:
        self.lookups.append(subscriber_id)
        return self.rows.get(subscriber_id)


@pytest.fixture
def tokens() -> SubscriberTokens:
    return SubscriberTokens(KEY)


@pytest.fixture
def rows() -> Rows:
    return Rows(ALICE, BOB)


@pytest.mark.parametrize("purpose", list(Purpose))
async def test_a_token_names_its_subscriber(tokens: SubscriberTokens, rows: Rows, purpose: Purpose) -> None:
    token = tokens.make(purpose, ALICE, NOW)

    assert await tokens.verify(purpose, token, NOW, rows.get_by_id) == ALICE


def test_tokens_are_compact_and_url_safe(tokens: SubscriberTokens) -> None:
    token = tokens.make(Purpose.UNSUBSCRIBE, subscriber(2**40, "x" * 200 + "@example.com"), NOW)

    assert len(token) == TOKEN_LENGTH == 39
    assert set(token) <= set(string.ascii_letters + string.digits + "-_")
    assert "example" not in base64.urlsafe_b64decode(token + "=").decode("latin-1")  # no address inside


async def test_a_token_of_another_key_is_forged(tokens: SubscriberTokens, rows: Rows) -> None:
    forged = SubscriberTokens("another key").make(Purpose.UNSUBSCRIBE, ALICE, NOW)

    with pytest.raises(BadToken, match="not valid"):
        await tokens.verify(Purpose.UNSUBSCRIBE, forged, NOW, rows.get_by_id)


async def test_every_changed_character_is_refused(tokens: SubscriberTokens, rows: Rows) -> None:
    token = tokens.make(Purpose.UNSUBSCRIBE, ALICE, NOW)
    alphabet = string.ascii_letters + string.digits + "-_"

    for position in range(len(token)):
        for replacement in {
            alphabet[(alphabet.index(token[position]) + step) % 64] for step in (1, 2, 17, 40)
        }:
            tampered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(BadToken):
                await tokens.verify(Purpose.UNSUBSCRIBE, tampered, NOW, rows.get_by_id)


async def test_a_token_moved_to_another_subscriber_id_is_refused(
    tokens: SubscriberTokens, rows: Rows
) -> None:
    raw = bytearray(base64.urlsafe_b64decode(tokens.make(Purpose.UNSUBSCRIBE, ALICE, NOW) + "="))
    raw[1:9] = BOB.id.to_bytes(8, "big")  # Alice's tag, Bob's id
    moved = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")

    with pytest.raises(BadToken, match="not valid"):
        await tokens.verify(Purpose.UNSUBSCRIBE, moved, NOW, rows.get_by_id)


async def test_a_token_is_bound_to_the_address_not_just_the_id(tokens: SubscriberTokens) -> None:
    token = tokens.make(Purpose.UNSUBSCRIBE, ALICE, NOW)
    # The row with Alice's id now holds someone else (an id reused after a restore, say).
    reused = Rows(subscriber(ALICE.id, "mallory@example.com"))

    with pytest.raises(BadToken):
        await tokens.verify(Purpose.UNSUBSCRIBE, token, NOW, reused.get_by_id)
    # Emails compare case-insensitively, so a row whose address was respelled still matches.
    respelled = Rows(subscriber(ALICE.id, "Alice@Example.com"))
    assert (
        await tokens.verify(Purpose.UNSUBSCRIBE, token, NOW, respelled.get_by_id) == respelled.rows[ALICE.id]
    )


async def test_a_token_of_a_deleted_subscriber_is_refused(tokens: SubscriberTokens) -> None:
    token = tokens.make(Purpose.UNSUBSCRIBE, ALICE, NOW)

    with pytest.raises(BadToken, match="not valid"):
        await tokens.verify(Purpose.UNSUBSCRIBE, token, NOW, Rows().get_by_id)


async def test_a_token_for_one_purpose_does_nothing_for_the_other(
    tokens: SubscriberTokens, rows: Rows
) -> None:
    unsubscribe = tokens.make(Purpose.UNSUBSCRIBE, ALICE, NOW)
    confirm = tokens.make(Purpose.CONFIRM, ALICE, NOW)

    with pytest.raises(BadToken):
        await tokens.verify(Purpose.CONFIRM, unsubscribe, NOW, rows.get_by_id)
    with pytest.raises(BadToken):
        await tokens.verify(Purpose.UNSUBSCRIBE, confirm, NOW, rows.get_by_id)


async def test_confirmation_tokens_expire_after_a_week(tokens: SubscriberTokens, rows: Rows) -> None:
    token = tokens.make(Purpose.CONFIRM, ALICE, NOW)

    week = dt.timedelta(days=7)
    assert await tokens.verify(Purpose.CONFIRM, token, NOW + week, rows.get_by_id) == ALICE
    with pytest.raises(BadToken, match="expired"):
        await tokens.verify(Purpose.CONFIRM, token, NOW + week + dt.timedelta(seconds=1), rows.get_by_id)


async def test_unsubscribe_tokens_never_expire(tokens: SubscriberTokens, rows: Rows) -> None:
    token = tokens.make(Purpose.UNSUBSCRIBE, ALICE, NOW)

    assert (
        await tokens.verify(Purpose.UNSUBSCRIBE, token, NOW + dt.timedelta(days=3650), rows.get_by_id)
        == ALICE
    )


async def test_a_token_from_the_future_is_refused_beyond_clock_skew(
    tokens: SubscriberTokens, rows: Rows
) -> None:
    token = tokens.make(Purpose.CONFIRM, ALICE, NOW)

    assert await tokens.verify(Purpose.CONFIRM, token, NOW - CLOCK_SKEW, rows.get_by_id) == ALICE
    with pytest.raises(BadToken, match="not valid yet"):
        await tokens.verify(
            Purpose.CONFIRM, token, NOW - CLOCK_SKEW - dt.timedelta(seconds=1), rows.get_by_id
        )


@pytest.mark.parametrize(
    "garbled",
    [
        "",
        "abc",
        "A" * 38,
        "A" * 40,
        "A" * 39,  # the right length and alphabet, but version 0
        "!" * 39,
        "+" * 39,  # standard base64, not URL-safe
        "Ö" * 39,
        "../../../../etc/passwd/../../../../../../",
        "A" * 10_000,
    ],
)
async def test_garbled_tokens_are_refused_before_any_lookup(
    tokens: SubscriberTokens, rows: Rows, garbled: str
) -> None:
    with pytest.raises(BadToken, match="not valid"):
        await tokens.verify(Purpose.UNSUBSCRIBE, garbled, NOW, rows.get_by_id)
    assert rows.lookups == []


def test_a_key_is_required() -> None:
    with pytest.raises(ValueError, match="secret key"):
        SubscriberTokens("")


@pytest.mark.parametrize("subscriber_id", [0, 2**31, 2**63, 2**64 - 1])
async def test_a_token_naming_an_id_no_database_holds_is_refused_before_any_lookup(
    subscriber_id: int,
) -> None:
    raw = struct.pack(">BQI", 1, subscriber_id, 1_700_000_000) + b"\0" * 16
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    looked_up: list[int] = []

    async def lookup(found_id: int) -> None:
        looked_up.append(found_id)

    with pytest.raises(BadToken):
        await SubscriberTokens("key").verify(Purpose.UNSUBSCRIBE, token, dt.datetime.now(dt.UTC), lookup)
    assert looked_up == []
