"""Signed tokens in the links we mail to subscribers: confirm a sign-up, unsubscribe, choose topics.

A token is 39 URL-safe characters, the unpadded base64url of 29 bytes:

    version (1) | subscriber id (8, big-endian) | issued at (4, Unix seconds) | tag (16)

tag = the first 16 bytes of HMAC-SHA256(key, purpose, id, channel, address key, issued at), with a key
derived from SECRET_KEY for this use alone (tracking links sign with SECRET_KEY differently). The address
is not in the token, so a token in a log or a Referer gives nothing away; the tag binds the token to the
subscriber row it names, so it cannot act on another subscriber, nor on a later row that reuses the id
with another address; the purpose is in the tag, so an unsubscribe token opens no preference page and the
other way round. Confirmation tokens expire after a week; unsubscribe and preference tokens never do (a
mail from last year must still unsubscribe).

`ReaderIds` signs the other id we mail: the `s` of a tracked link in one subscriber's mail
(JIANBAO_TRACK_SUBSCRIBERS), which tells the click-tracking redirect whose click it is. 16 URL-safe
characters, the unpadded base64url of 12 bytes: subscriber id (4, big-endian) | tag (8), the tag the first
8 bytes of HMAC-SHA256 of the id with a key derived from SECRET_KEY for this use alone. Shorter than a
subscriber token because it stands in every tracked link of a mail and grants nothing: a forged one would
at most put a click on someone's page, and 64 bits are out of reach of guessing over HTTP all the same.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import struct
from collections.abc import Awaitable, Callable
from enum import StrEnum

from content.errors import BadInput
from storage.subscribers import Subscriber

_VERSION = 1
_LAYOUT = struct.Struct(">BQI")  # version, subscriber id, issued at
_TAG_BYTES = 16  # 128 bits: forging one is out of reach however many tries an attacker makes
TOKEN_LENGTH = 39  # base64 characters of the 29 bytes, without padding
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_KEY_PURPOSE = b"jianbao subscriber tokens v1"
MAX_SUBSCRIBER_ID = 2**31 - 1
# A token issued a little "in the future" is a clock step between two processes, not an attack.
CLOCK_SKEW = dt.timedelta(minutes=5)


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"  # the preference page linked from every newsletter mail


# A sign-up never confirmed is deleted once its link has expired (bot/subscriptions.py).
CONFIRM_LIFETIME = dt.timedelta(days=7)
LIFETIMES: dict[Purpose, dt.timedelta | None] = {
    Purpose.CONFIRM: CONFIRM_LIFETIME,
    Purpose.UNSUBSCRIBE: None,
    Purpose.PREFERENCES: None,  # like unsubscribing: last year's mail must still lead to the page
}


class BadToken(BadInput):
    """A link that is garbled, forged, for something else, for a subscriber who is gone, or expired."""

    kind = "bad_token"


SubscriberLookup = Callable[[int], Awaitable[Subscriber | None]]


class SubscriberTokens:
    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("subscriber tokens need a secret key")
        self._key = hmac.new(secret_key.encode(), _KEY_PURPOSE, hashlib.sha256).digest()

    def make(self, purpose: Purpose, subscriber: Subscriber, now: dt.datetime) -> str:
        issued_at = int(now.timestamp())
        head = _LAYOUT.pack(_VERSION, subscriber.id, issued_at)
        tag = self._tag(purpose, subscriber, issued_at)
        return base64.urlsafe_b64encode(head + tag).decode("ascii").rstrip("=")

    async def verify(
        self, purpose: Purpose, token: str, now: dt.datetime, lookup: SubscriberLookup
    ) -> Subscriber:
        """The subscriber `token` was made for, for `purpose`; BadToken otherwise.

        `lookup` reads a subscriber by id (SubscriberStore.get_by_id): the tag covers the subscriber's
        channel and address, which only their row knows. A garbled token is refused before that read.
        """
        subscriber_id, issued_at, tag = _decode(token)
        subscriber = await lookup(subscriber_id)
        if subscriber is None or not hmac.compare_digest(tag, self._tag(purpose, subscriber, issued_at)):
            raise BadToken("this link is not valid")
        issued = dt.datetime.fromtimestamp(issued_at, dt.UTC)
        if issued > now + CLOCK_SKEW:
            raise BadToken("this link is not valid yet")
        lifetime = LIFETIMES[purpose]
        if lifetime is not None and now - issued > lifetime:
            raise BadToken("this link has expired")
        return subscriber

    def _tag(self, purpose: Purpose, subscriber: Subscriber, issued_at: int) -> bytes:
        # Newline-separated: no field can contain one (addresses are printable, the rest are numbers).
        fields = (
            purpose.value,
            str(subscriber.id),
            subscriber.channel,
            subscriber.address_key,
            str(issued_at),
        )
        return hmac.new(self._key, "\n".join(fields).encode(), hashlib.sha256).digest()[:_TAG_BYTES]


def _decode(token: str) -> tuple[int, int, bytes]:
    if not _TOKEN.fullmatch(token):
        raise BadToken("this link is not valid")
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        raise BadToken("this link is not valid") from None
    # Base64 leaves spare bits in the last character: a token that differs only there decodes to the
    # same bytes. Only the one spelling we make is accepted, so a changed character is always refused.
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
        raise BadToken("this link is not valid")
    version, subscriber_id, issued_at = _LAYOUT.unpack_from(raw)
    # Ids are the database's INTEGER keys (PostgreSQL: 32 bits): a forged larger one is looked up nowhere.
    if version != _VERSION or not 0 < subscriber_id <= MAX_SUBSCRIBER_ID:
        raise BadToken("this link is not valid")
    return subscriber_id, issued_at, raw[_LAYOUT.size :]


_READER_KEY_PURPOSE = b"jianbao reader ids v1"
_READER_LAYOUT = struct.Struct(">I")  # subscriber id
_READER_TAG_BYTES = 8
READER_ID_LENGTH = 16  # base64 characters of the 12 bytes, without padding
_READER_ID = re.compile(rf"[A-Za-z0-9_-]{{{READER_ID_LENGTH}}}")


class ReaderIds:
    """The signed reader id of tracked links in one subscriber's mail; see the module's docstring."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("reader ids need a secret key")
        self._key = hmac.new(secret_key.encode(), _READER_KEY_PURPOSE, hashlib.sha256).digest()

    def make(self, subscriber_id: int) -> str:
        if not 0 < subscriber_id <= MAX_SUBSCRIBER_ID:
            raise ValueError(f"not a subscriber id: {subscriber_id}")
        head = _READER_LAYOUT.pack(subscriber_id)
        return base64.urlsafe_b64encode(head + self._tag(head)).decode("ascii")

    def read(self, value: str | None) -> int | None:
        """The subscriber id `value` was made for; None for anything else (missing, garbled, forged)."""
        if value is None or not _READER_ID.fullmatch(value):
            return None
        raw = base64.urlsafe_b64decode(value)
        head, tag = raw[: _READER_LAYOUT.size], raw[_READER_LAYOUT.size :]
        if not hmac.compare_digest(tag, self._tag(head)):
            return None
        (subscriber_id,) = _READER_LAYOUT.unpack(head)
        return subscriber_id if 0 < subscriber_id <= MAX_SUBSCRIBER_ID else None

    def _tag(self, head: bytes) -> bytes:
        return hmac.new(self._key, head, hashlib.sha256).digest()[:_READER_TAG_BYTES]
