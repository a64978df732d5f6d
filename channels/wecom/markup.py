"""WeCom markdown, the small subset a group robot's `markdown` message renders, written and read back.

The subset (消息推送配置说明, https://developer.work.weixin.qq.com/document/path/99110, "目前支持的markdown
语法是如下的子集"): headings `# ` to `###### ` ("注意#与文字中间要有空格"), bold `**bold**`, links
`[text](url)`, inline code `` `code` `` ("暂不支持跨行"), quotes `> `, and three font colours
`<font color="info|comment|warning">`. Besides, "text/markdown类型消息支持在content中使用<@userid>扩展语法来
@群成员": an item title holding `<@all>` would ping a whole group.

The document names no escape character, so text is neutralised by substitution, never by a backslash the
client may or may not read: each character that can open or close a construct of the subset becomes its
full-width form, which reads the same in a Chinese newsletter (`[` `]` `*` `` ` `` `<` `>` everywhere, `#` at
the start of a line). Line breaks and other control characters inside one-line fields become spaces.
A link target is percent-encoded where it could end the link early (`(`, `)`, spaces, `<`, `>`, quotes,
backslash, non-ASCII), and only http(s) targets are links; anything else stays plain text.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

# Syntax characters of the subset and their full-width stand-ins.
_SUBSTITUTES = str.maketrans({"[": "［", "]": "］", "*": "＊", "`": "｀", "<": "＜", ">": "＞"})
_LINE_START_HASH = re.compile(r"(?m)^([ \t\u3000]*)#")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# What a link target keeps as is: RFC 3986's unreserved, reserved and "%" characters, minus those that can
# end a Markdown link or its target early ("(", ")", "[", "]") and "*", which could meet a bold marker.
_URL_SAFE = "-._~:/?#@!$&'+,;=%"

FONT_COLOURS = ("info", "comment", "warning")


def text(value: str) -> str:
    """Text of several lines, shown literally: no construct of the subset can start or end inside it."""
    cleaned = _CONTROL.sub(" ", value.replace("\r\n", "\n").replace("\r", "\n"))
    return _LINE_START_HASH.sub(r"\1＃", cleaned.translate(_SUBSTITUTES))


def line(value: str) -> str:
    """Text on one line (a title, a name): line breaks become spaces."""
    return text(value).replace("\n", " ")


def web_url(url: str | None) -> str | None:
    """The target as a link may carry it, or None when it is not an http(s) URL with a host."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(url, safe=_URL_SAFE)


def link(label: str, url: str | None) -> str:
    """`[label](url)`, or the label alone when there is no usable target or nothing to click."""
    target = web_url(url)
    shown = line(label)
    if target is None or not shown.strip():
        return shown
    return f"[{shown}]({target})"


def bold(value: str) -> str:
    return f"**{line(value)}**"


def font(value: str, colour: str) -> str:
    if colour not in FONT_COLOURS:
        raise ValueError(f"WeCom markdown has only the font colours {FONT_COLOURS}")
    return f'<font color="{colour}">{line(value)}</font>'


def heading(value: str, level: int = 1) -> str:
    if not 1 <= level <= 6:
        raise ValueError("headings go from level 1 to 6")
    return f"{'#' * level} {line(value)}"


def quoted(value: str) -> str:
    """Every line of `value` as a quote line."""
    return "\n".join(f"> {text(part)}" for part in value.splitlines() or [""])
