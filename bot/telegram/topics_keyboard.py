"""The /topics keyboard: one button per topic (✅ when chosen) and one that clears them all.

Its callback data shares the 64-byte limit (keyboard.MAX_CALLBACK_DATA_BYTES) with the page buttons and
must never be read as one of them: it starts with "t", which the page buttons ("s:", "k:") never do.

- "t:<topic>" toggles a topic that fits (most do: 量化 is 8 bytes of data);
- "tk:<key>" toggles the topic among those the keyboard offers whose key is <key>, for one too long to
  carry (up to 32 Chinese characters are 96 bytes). The offered topics are the reader's own and the
  popular ones, so a key needs no memory; one whose topic is no longer offered is refused, never
  guessed;
- "t*" clears the reader's topics (every issue, whole).

The data comes back from the client, which a hostile one can forge: it is parsed defensively, and the
worst a forged button can do is toggle a topic the reader could have typed after /subscribe.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.telegram.keyboard import MAX_CALLBACK_DATA_BYTES
from storage.subscribers import MAX_TOPIC_LENGTH

TOPIC_PREFIX = "t:"
TOPIC_KEY_PREFIX = "tk:"
ALL_TOPICS_DATA = "t*"
# What the bot's handler for these buttons is given; anything else starting with "t" is answered as an
# expired button by it, so that the page handler never sees topic data.
TOPIC_DATA_PATTERN = re.compile(r"t")
ALL_TOPICS_LABEL = "全部（不选话题）"
CHOSEN_MARK = "✅ "
BUTTONS_PER_ROW = 3
_KEY_CHARS = 12
_KEY = re.compile(rf"[A-Za-z0-9_-]{{{_KEY_CHARS}}}")


@dataclass(frozen=True, slots=True)
class TopicPress:
    """A pressed topic button: a topic by name, by key (`topic` is None), or "all" (both None)."""

    topic: str | None = None
    key: str | None = None

    @property
    def clears(self) -> bool:
        return self.topic is None and self.key is None


def topic_key(topic: str) -> str:
    """12 URL-safe characters (72 bits) standing for `topic` in callback data."""
    digest = hashlib.blake2b(topic.encode(), digest_size=9, person=b"jianbao-topic").digest()
    return base64.urlsafe_b64encode(digest).decode()


def topic_data(topic: str) -> str:
    direct = TOPIC_PREFIX + topic
    if len(direct.encode()) <= MAX_CALLBACK_DATA_BYTES:
        return direct
    return TOPIC_KEY_PREFIX + topic_key(topic)


def read_topic_data(data: str) -> TopicPress | None:
    """What a pressed topic button asks for; None when the data is not a topic button's."""
    if not data or len(data.encode()) > MAX_CALLBACK_DATA_BYTES:
        return None
    if data == ALL_TOPICS_DATA:
        return TopicPress()
    if data.startswith(TOPIC_KEY_PREFIX):
        key = data.removeprefix(TOPIC_KEY_PREFIX)
        return TopicPress(key=key) if _KEY.fullmatch(key) else None
    if data.startswith(TOPIC_PREFIX):
        topic = data.removeprefix(TOPIC_PREFIX)
        if 0 < len(topic) <= MAX_TOPIC_LENGTH and topic.isprintable() and topic == topic.strip():
            return TopicPress(topic=topic)
    return None


def offered_topics(chosen: Sequence[str], popular: Sequence[str]) -> tuple[str, ...]:
    """The topics the keyboard shows: the reader's own, then the popular ones they have not chosen."""
    return tuple(dict.fromkeys((*chosen, *popular)))


def find_topic(press: TopicPress, offered: Sequence[str]) -> str | None:
    """The topic a button names among those offered now (a keyed one is only found there)."""
    if press.topic is not None:
        return press.topic
    return next((topic for topic in offered if topic_key(topic) == press.key), None)


def topics_keyboard(
    chosen: Sequence[str], popular: Sequence[str], *, subscribed: bool = True
) -> InlineKeyboardMarkup:
    """Buttons of `offered_topics`, three a row, ✅ on the chosen ones (on 全部 for a subscriber of every
    issue: a chat not subscribed has nothing chosen)."""
    buttons = [
        InlineKeyboardButton(
            (CHOSEN_MARK if topic in chosen else "") + topic, callback_data=topic_data(topic)
        )
        for topic in offered_topics(chosen, popular)
    ]
    rows = [buttons[start : start + BUTTONS_PER_ROW] for start in range(0, len(buttons), BUTTONS_PER_ROW)]
    everything = (CHOSEN_MARK if subscribed and not chosen else "") + ALL_TOPICS_LABEL
    rows.append([InlineKeyboardButton(everything, callback_data=ALL_TOPICS_DATA)])
    return InlineKeyboardMarkup(rows)
