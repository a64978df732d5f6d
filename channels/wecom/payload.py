"""WeCom payloads: the exact JSON objects POSTed to a group robot's webhook, and how their size is counted.

The limit is on the markdown content, in bytes of UTF-8 (消息推送配置说明: "markdown内容，最长不超过4096个
字节，必须是utf8编码"), so each message is measured on `content.encode("utf-8")`, whatever the JSON around it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from channels.base import utf8_bytes
from channels.document import IssueDocument
from channels.links import RewrittenLink

# Source: 消息推送配置说明 (formerly 群机器人配置说明), WeCom developer centre,
# https://developer.work.weixin.qq.com/document/path/99110 (formerly .../path/91770), "markdown类型":
# "content | 是 | markdown内容，最长不超过4096个字节，必须是utf8编码". Over it the robot answers errcode 40058
# "markdown.content exceed max length 4096" (as public clients record the answer; 40058 is 全局错误码's
# "不合法的参数").
WECOM_MAX_CONTENT_BYTES = 4096
# Same document, "文本类型": "文本内容，最长不超过2048个字节，必须是utf8编码" (the sender checks
# text bodies too).
WECOM_MAX_TEXT_BYTES = 2048
MSGTYPE = "markdown"

_LINK = re.compile(r"\[([^\[\]\n]*)\]\(([^()\s]*)\)")
_FONT = re.compile(r'<font color="(?:info|comment|warning)">(.*?)</font>')
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_HEADING = re.compile(r"(?m)^#{1,6} ")
_QUOTE = re.compile(r"(?m)^> ")


def markdown_body(content: str) -> dict[str, Any]:
    """A markdown message as the document's "markdown类型" example shapes it."""
    return {"msgtype": MSGTYPE, "markdown": {"content": content}}


def content_of(body: dict[str, Any]) -> str:
    return str(body["markdown"]["content"])


def content_bytes(body: dict[str, Any]) -> int:
    return utf8_bytes(content_of(body))


def visible_text(content: str) -> str:
    """What a reader sees of our own markdown: links show their text, markers go. Exact for what
    render_wecom writes (its text never holds a raw marker: channels/wecom/markup.py)."""
    shown = _LINK.sub(r"\1", content)
    shown = _FONT.sub(r"\1", shown)
    shown = _BOLD.sub(r"\1", shown)
    shown = _HEADING.sub("", shown)
    return _QUOTE.sub("", shown)


@dataclass(frozen=True, slots=True)
class WeComPayload:
    """The messages of one issue for one group robot, in order; each is a whole request body."""

    messages: tuple[dict[str, Any], ...]
    links: tuple[RewrittenLink, ...]
    document: IssueDocument  # what was rendered: the trimmed document with `max_messages`

    def to_dict(self) -> dict[str, object]:
        return {
            "channel": "wecom",
            "messages": [copy.deepcopy(message) for message in self.messages],
            "links": [link.to_dict() for link in self.links],
        }

    def preview(self) -> str:
        total = len(self.messages)
        parts = []
        for number, message in enumerate(self.messages, 1):
            size = f"{content_bytes(message)}/{WECOM_MAX_CONTENT_BYTES}"
            heading = f"──── 消息 {number}/{total} · {size} 字节 ────"
            parts.append(f"{heading}\n{visible_text(content_of(message))}")
        return "\n\n".join(parts)
