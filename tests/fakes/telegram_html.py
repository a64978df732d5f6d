"""Telegram's HTML parse mode as the Bot API applies it, for the fake Bot API server.

Modelled on tdlib's parse_html (the parser behind the Bot API): the text is scanned once; `<` always
starts a tag (a bare `<` is an error, not text); only the tags of the "HTML style" in the Bot API's
"Formatting options" are accepted; every start tag needs its end tag, properly nested; `&lt; &gt;
&amp; &quot;` and numeric references are decoded, any other `&` stays as it is. Errors carry
Telegram's own wording after "Bad Request: can't parse entities: " and point at UTF-8 byte offsets.

The result is the plain text Telegram keeps and its entities (offsets and lengths in UTF-16 code units),
the shape a real Message has, so python-telegram-bot can read the fake's answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Tag -> entity type (Bot API "Formatting options", HTML style).
ENTITY_OF_TAG = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",  # only with class="tg-spoiler"
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
_TAG_NAME = re.compile(r"[a-zA-Z0-9-]*")
_ATTRIBUTE_NAME = re.compile(r"[a-zA-Z0-9_-]*")
_UNQUOTED_VALUE = re.compile(r"[^\s>]*")


class EntityError(ValueError):
    """Telegram's 400 "can't parse entities": the message says what and where."""


@dataclass
class ParsedText:
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return utf16_units(self.text)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Open:
    tag: str
    start: int  # UTF-16 offset in the output
    attributes: dict[str, str]


def parse_html(source: str) -> ParsedText:
    """The text and entities of `source` in HTML parse mode; EntityError as Telegram reports it."""
    out: list[str] = []
    units = 0
    stack: list[_Open] = []
    entities: list[dict[str, Any]] = []
    position = 0
    while position < len(source):
        char = source[position]
        if char == "&":
            decoded, position = _entity(source, position)
            out.append(decoded)
            units += utf16_units(decoded)
            continue
        if char != "<":
            out.append(char)
            units += utf16_units(char)
            position += 1
            continue
        offset = len(source[:position].encode())
        if source.startswith("</", position):
            position = _end_tag(source, position, offset, stack, entities, units)
        else:
            opened, position = _start_tag(source, position, offset, units)
            stack.append(opened)
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
    return ParsedText("".join(out), entities)


def _entity(source: str, position: int) -> tuple[str, int]:
    match = _ENTITY.match(source, position)
    if match is None:
        return "&", position + 1
    named, decimal, hexadecimal = match.groups()
    if named:
        return _NAMED_ENTITIES[named], match.end()
    code = int(decimal) if decimal else int(hexadecimal, 16)
    if not 0 < code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "&", position + 1
    return chr(code), match.end()


def _start_tag(source: str, position: int, offset: int, units: int) -> tuple[_Open, int]:
    name_match = _TAG_NAME.match(source, position + 1)
    assert name_match is not None  # the pattern matches the empty string
    name = name_match.group()
    cursor = name_match.end()
    if cursor >= len(source):
        raise EntityError(f"Unclosed start tag at byte offset {offset}")
    tag = name.lower()
    if tag not in ENTITY_OF_TAG:
        raise EntityError(f'Unsupported start tag "{name}" at byte offset {offset}')
    attributes: dict[str, str] = {}
    while True:
        while cursor < len(source) and source[cursor].isspace():
            cursor += 1
        if cursor >= len(source):
            raise EntityError(f"Unclosed start tag at byte offset {offset}")
        if source[cursor] == ">":
            cursor += 1
            break
        attribute_match = _ATTRIBUTE_NAME.match(source, cursor)
        assert attribute_match is not None
        attribute = attribute_match.group().lower()
        if not attribute:
            raise EntityError(f'Empty attribute name in the tag "{tag}" at byte offset {offset}')
        cursor = attribute_match.end()
        while cursor < len(source) and source[cursor].isspace():
            cursor += 1
        if cursor >= len(source) or source[cursor] != "=":
            if cursor < len(source) and source[cursor] == ">" and tag == "blockquote":
                attributes[attribute] = ""  # <blockquote expandable>
                continue
            raise EntityError(
                f'Expected equal sign in declaration of an attribute of the tag "{tag}" at byte offset {offset}'
            )
        cursor += 1
        while cursor < len(source) and source[cursor].isspace():
            cursor += 1
        if cursor >= len(source):
            raise EntityError(f"Unclosed start tag at byte offset {offset}")
        quote = source[cursor]
        if quote in "\"'":
            end = source.find(quote, cursor + 1)
            if end < 0:
                raise EntityError(f"Unclosed start tag at byte offset {offset}")
            raw_value = source[cursor + 1 : end]
            cursor = end + 1
        else:
            value_match = _UNQUOTED_VALUE.match(source, cursor)
            assert value_match is not None
            raw_value = value_match.group()
            cursor = value_match.end()
        attributes[attribute] = _decode(raw_value)
    if tag == "span" and attributes.get("class") != "tg-spoiler":
        raise EntityError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
    if tag == "tg-emoji" and not attributes.get("emoji-id", "").isdigit():
        raise EntityError(f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {offset}')
    return _Open(tag, units, attributes), cursor


def _end_tag(
    source: str,
    position: int,
    offset: int,
    stack: list[_Open],
    entities: list[dict[str, Any]],
    units: int,
) -> int:
    name_match = _TAG_NAME.match(source, position + 2)
    assert name_match is not None
    name = name_match.group().lower()
    cursor = name_match.end()
    while cursor < len(source) and source[cursor].isspace():
        cursor += 1
    if cursor >= len(source) or source[cursor] != ">":
        raise EntityError(f"Unclosed end tag at byte offset {offset}")
    if not stack:
        raise EntityError(f"Unexpected end tag at byte offset {offset}")
    opened = stack.pop()
    if name != opened.tag:
        raise EntityError(
            f'Unmatched end tag at byte offset {offset}, expected "</{opened.tag}>", found "</{name}>"'
        )
    if units > opened.start:
        entities.append(_entity_of(opened, units))
    return cursor + 1


def _entity_of(opened: _Open, end: int) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "type": ENTITY_OF_TAG[opened.tag],
        "offset": opened.start,
        "length": end - opened.start,
    }
    if opened.tag == "a":
        entity["url"] = opened.attributes.get("href", "")
    elif opened.tag == "tg-emoji":
        entity["custom_emoji_id"] = opened.attributes["emoji-id"]
    elif opened.tag == "blockquote" and "expandable" in opened.attributes:
        entity["type"] = "expandable_blockquote"
    return entity


def _decode(value: str) -> str:
    out: list[str] = []
    position = 0
    while position < len(value):
        if value[position] == "&":
            decoded, position = _entity(value, position)
            out.append(decoded)
        else:
            out.append(value[position])
            position += 1
    return "".join(out)
