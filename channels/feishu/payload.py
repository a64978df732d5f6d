"""Feishu payloads: the exact JSON bodies POSTed to a custom bot's webhook, and how their size is counted.

The limit is on the request body (自定义机器人使用指南: "发送消息时，请求体的数据大小不能超过 20 KB"), so
sizes are counted on the bytes the sender puts on the wire: `encode_body` (compact JSON, UTF-8, CJK not
escaped), with room kept for the "timestamp" and "sign" fields a signed bot adds at send time.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channels.document import IssueDocument
from channels.links import RewrittenLink

# Source for both limits: 自定义机器人使用指南 (Feishu Open Platform, "Custom bot usage guide"),
# https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot ("注意事项"):
# "发送消息时，请求体的数据大小不能超过 20 KB", and for a 9499 Bad Request "请求体大小不能超过 20 K".
# The guide does not say whether 20 KB is 20,000 or 20,480 bytes: the smaller is used.
FEISHU_MAX_BODY_BYTES = 20_000
# The guide's signed example: {"timestamp": "1599360473", "sign": "xxx", ...}. Ten digits last until the
# year 2286; an HMAC-SHA256 is 32 bytes, 44 characters of Base64.
_SIGNED_EXAMPLE = {"timestamp": "1599360473", "sign": "A" * 44}
SIGNATURE_BYTES = len(json.dumps(_SIGNED_EXAMPLE, separators=(",", ":")).encode()) - 2 + 1  # + the comma
# What a rendered body may take, so that it stays within the limit once signed.
FEISHU_BODY_BUDGET = FEISHU_MAX_BODY_BYTES - SIGNATURE_BYTES

MSG_TYPE = "post"  # rich text (富文本): paragraphs of text and a (link) nodes
LOCALE = "zh_cn"


def encode_json(value: object) -> bytes:
    """Compact JSON in UTF-8, CJK unescaped (3 bytes per character instead of 6 for \\uXXXX)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_body(body: Mapping[str, Any]) -> bytes:
    """The body exactly as the sender puts it on the wire."""
    return encode_json(body)


def body_bytes(body: Mapping[str, Any]) -> int:
    return len(encode_body(body))


def post_body(title: str, paragraphs: list[list[dict[str, str]]]) -> dict[str, Any]:
    """A rich-text message as the guide's "发送富文本消息" example shapes it."""
    return {"msg_type": MSG_TYPE, "content": {"post": {LOCALE: {"title": title, "content": paragraphs}}}}


def post_lines(body: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The title and the visible lines of a rich-text body (a link shows its text)."""
    post = body["content"]["post"][LOCALE]
    lines = ["".join(str(node.get("text", "")) for node in paragraph) for paragraph in post["content"]]
    return str(post.get("title", "")), lines


@dataclass(frozen=True, slots=True)
class FeishuPayload:
    """The messages of one issue for one custom bot, in order; each is a whole request body, without the
    "timestamp" and "sign" that a signed bot's sender adds (they depend on the time of sending)."""

    messages: tuple[dict[str, Any], ...]
    links: tuple[RewrittenLink, ...]
    document: IssueDocument  # what was rendered: the trimmed document with `max_messages`

    def to_dict(self) -> dict[str, object]:
        return {
            "channel": "feishu",
            "messages": [copy.deepcopy(message) for message in self.messages],
            "links": [link.to_dict() for link in self.links],
        }

    def preview(self) -> str:
        total = len(self.messages)
        parts = []
        for number, message in enumerate(self.messages, 1):
            title, lines = post_lines(message)
            heading = (
                f"──── 消息 {number}/{total} · {body_bytes(message)}/{FEISHU_BODY_BUDGET} 字节 "
                f"（签名后上限 {FEISHU_MAX_BODY_BYTES}）────"
            )
            parts.append("\n".join([heading, f"【标题】{title}", *lines]))
        return "\n\n".join(parts)
