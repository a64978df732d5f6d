"""Telegram payloads, and the counting that the Bot API's limits are about."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from channels.base import utf8_bytes, utf16_units
from channels.document import IssueDocument
from channels.links import RewrittenLink

# Limits (docs/channels.md, "Text limits"; https://core.telegram.org/bots/api#sendmessage for 4096; the
# entity and raw-byte limits are unofficial).
TELEGRAM_MAX_TEXT = 4096  # Bot API sendMessage: 1-4096 characters after entity parsing (UTF-16 units)
TELEGRAM_MAX_ENTITIES = 100  # ~100 entities per message; we count every formatting tag pair
TELEGRAM_MAX_RAW_BYTES = 32768  # raw text over 32768 bytes is rejected before entity parsing
PARSE_MODE = "HTML"  # its tag subset (b, i, a href... no <p>, <br>, lists) is all we emit: b, i, a

_TAG = re.compile(r"<[^<>]*>")
_START_TAG = re.compile(r"<[a-zA-Z]")


def visible_length(html_text: str) -> int:
    """UTF-16 code units of the text Telegram keeps after entity parsing (tags out, entities decoded).

    Exact for our own output, whose text and attribute values never hold a raw < or >.
    """
    return utf16_units(html.unescape(_TAG.sub("", html_text)))


def entity_count(html_text: str) -> int:
    """Formatting entities: one per start tag."""
    return len(_START_TAG.findall(html_text))


def visible_text(html_text: str) -> str:
    return html.unescape(_TAG.sub("", html_text))


@dataclass(frozen=True, slots=True)
class Size:
    units: int = 0
    entities: int = 0
    raw: int = 0

    @classmethod
    def of(cls, text: str) -> Size:
        return cls(visible_length(text), entity_count(text), utf8_bytes(text))

    def __add__(self, other: Size) -> Size:
        return Size(self.units + other.units, self.entities + other.entities, self.raw + other.raw)

    @property
    def fits(self) -> bool:
        return (
            self.units <= TELEGRAM_MAX_TEXT
            and self.entities <= TELEGRAM_MAX_ENTITIES
            and self.raw <= TELEGRAM_MAX_RAW_BYTES
        )


@dataclass(frozen=True, slots=True)
class TelegramMessage:
    """One sendMessage call. `to_dict` keeps `disable_web_page_preview` (the JSON contract), but Bot API
    7.0 replaced it by `link_preview_options`, python-telegram-bot warns on it (PTBDeprecationWarning
    since 20.8) and refuses both at once: a sender passes `LinkPreviewOptions(**link_preview_options)`."""

    text: str
    parse_mode: str = PARSE_MODE
    disable_web_page_preview: bool = True

    @property
    def link_preview_options(self) -> dict[str, bool]:
        return {"is_disabled": self.disable_web_page_preview}

    @property
    def length(self) -> int:
        return visible_length(self.text)

    @property
    def entities(self) -> int:
        return entity_count(self.text)

    def to_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "parse_mode": self.parse_mode,
            "disable_web_page_preview": self.disable_web_page_preview,
        }


@dataclass(frozen=True, slots=True)
class TelegramPayload:
    messages: tuple[TelegramMessage, ...]
    links: tuple[RewrittenLink, ...]
    document: IssueDocument  # what was rendered: the trimmed document with `max_messages`

    def to_dict(self) -> dict[str, object]:
        return {
            "channel": "telegram",
            "messages": [message.to_dict() for message in self.messages],
            "links": [link.to_dict() for link in self.links],
        }

    def preview(self) -> str:
        total = len(self.messages)
        parts = []
        for number, message in enumerate(self.messages, 1):
            heading = (
                f"──── 消息 {number}/{total} · {message.length}/{TELEGRAM_MAX_TEXT} 字符 · "
                f"{message.entities}/{TELEGRAM_MAX_ENTITIES} 格式 ────"
            )
            parts.append(f"{heading}\n{visible_text(message.text)}")
        return "\n\n".join(parts)
