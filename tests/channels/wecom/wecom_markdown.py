"""An independent reader of WeCom robot markdown, as the tests judge a payload with it.

Written from 消息推送配置说明 (https://developer.work.weixin.qq.com/document/path/99110, "markdown类型"),
not from channels/wecom: content of 1..4096 bytes of UTF-8; the subset's constructs only (`# ` headings,
`**bold**`, `[text](url)`, `> ` quotes, `<font color="info|comment|warning">`); and, for our own output,
nothing else that the client could read as markup: no stray `[ ] * ` < >`, no `<@userid>` mention, no
control character but the line break, every link an http(s) URL that cannot end early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_CONTENT_BYTES = 4096  # 消息推送配置说明: "markdown内容，最长不超过4096个字节，必须是utf8编码"

LINK = re.compile(r"\[([^\[\]\n]*)\]\(([^()\s]*)\)")
FONT = re.compile(r'<font color="(info|comment|warning)">([^<>\n]*)</font>')
BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
HEADING = re.compile(r"(#{1,6}) (\S.*)")
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
STRAY = set("[]*`<>")
# Full-width stand-ins a renderer may use for the subset's markers, mapped back for comparisons.
NORMALISE = str.maketrans(
    {"［": "[", "］": "]", "＊": "*", "｀": "`", "＜": "<", "＞": ">", "＃": "#", "\u2060": None}
)


@dataclass
class Markdown:
    visible: str = ""
    hrefs: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, visible text)
    headings: int = 0
    errors: list[str] = field(default_factory=list)


def parse(content: str) -> Markdown:
    found = Markdown()
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        found.errors.append(f"{size} bytes, over {MAX_CONTENT_BYTES}")
    if not content.strip():
        found.errors.append("empty content")
    if CONTROL.search(content):
        found.errors.append("a control character")
    if "<@" in content:
        found.errors.append("a <@...> mention")
    lines = []
    for number, line in enumerate(content.split("\n")):
        if line.startswith("#"):
            heading = HEADING.fullmatch(line)
            if heading is None:
                found.errors.append(f"a '#' line that is not a heading: {line[:40]!r}")
                continue
            if number != 0:
                found.errors.append("a heading after the first line")
            found.headings += 1
            line = heading.group(2)
        elif line.startswith(">"):
            if not line.startswith("> "):
                found.errors.append(f"a quote without a space: {line[:40]!r}")
            line = line[2:]
        lines.append(_inline(line, found))
    found.visible = "\n".join(lines)
    return found


def _inline(line: str, found: Markdown) -> str:
    def link(match: re.Match[str]) -> str:
        text, href = match.group(1), match.group(2)
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            found.errors.append(f"a link to {href[:60]!r}")
        if not text.strip():
            found.errors.append("a link without text")
        found.hrefs.append(href)
        found.links.append((href, text))
        return text

    line = LINK.sub(link, line)
    line = FONT.sub(lambda match: match.group(2), line)
    line = BOLD.sub(lambda match: match.group(1), line)
    stray = sorted(STRAY & set(line))
    if stray:
        found.errors.append(f"stray markers {stray} in {line[:60]!r}")
    return line


def normalise(text: str) -> str:
    """Text as compared with the document: stand-ins mapped back, control characters and whitespace runs
    as one space."""
    return " ".join(CONTROL.sub(" ", text.translate(NORMALISE)).split())


def check_body(body: Any) -> Markdown:
    """One request body as the robot takes it; the parsed content."""
    assert isinstance(body, dict)
    assert set(body) == {"msgtype", "markdown"}
    assert body["msgtype"] == "markdown"
    assert set(body["markdown"]) == {"content"}
    content = body["markdown"]["content"]
    assert isinstance(content, str)
    parsed = parse(content)
    assert parsed.errors == [], parsed.errors
    return parsed
