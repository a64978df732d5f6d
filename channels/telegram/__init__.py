"""Telegram: an issue as Bot API messages in HTML parse mode.

Layout (blocks, joined by a blank line inside a message):

    <b>嵌入式AI简报 (2020-07-02)</b>         header: title, headline, tagline, the issue page
    <b>导读</b>：lead                         lead, as plain text
    <b>热身小新闻</b> / • news               quick news
    <b>【业界新闻】</b>                       a section header, glued to its first item
    1. [tag] <a href="…">title</a> · source   an item: numbered line, then its summary runs
    …
    <a href="…#section-1">还有 N 条</a>        the last line of a cut section

Full mode packs the blocks greedily into as few messages as the limits allow (a message never
splits a block, so every message has balanced tags); a message that continues a section starts with
"<b>【名称】</b>（续）". With `max_messages` the whole issue is trimmed section-aware by
`channels.fitting.fit` until it packs into that many messages.

Only the tags of the Bot API's HTML style are emitted (b, i, a href), text is escaped for < > &,
attributes with quote=True. Lengths are counted as Telegram counts them: UTF-16 code units of the
text after entity parsing (tags removed, entities decoded).
"""

from channels.telegram.payload import (
    PARSE_MODE,
    TELEGRAM_MAX_ENTITIES,
    TELEGRAM_MAX_RAW_BYTES,
    TELEGRAM_MAX_TEXT,
    TelegramMessage,
    TelegramPayload,
    entity_count,
    visible_length,
    visible_text,
)
from channels.telegram.render import render_telegram

__all__ = [
    "PARSE_MODE",
    "TELEGRAM_MAX_ENTITIES",
    "TELEGRAM_MAX_RAW_BYTES",
    "TELEGRAM_MAX_TEXT",
    "TelegramMessage",
    "TelegramPayload",
    "entity_count",
    "render_telegram",
    "visible_length",
    "visible_text",
]
