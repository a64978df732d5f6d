"""Feishu (飞书): an issue pushed to a group chat through the group's custom bot (自定义机器人) webhook.

A subscriber's address is the bot's hook token, with an optional signing secret (address.py). An issue
becomes rich-text (post) request bodies (render.py, payload.py), each POSTed to the bot's webhook, signed
when the bot has a secret (signing.py, transport.py), paced within the bot's own limits (pacing.py).
channel.py makes all this the `feishu` channel (channels/channel.py's interface: FEISHU, listed in
channels/registry.py), with its own settings in settings.py.

Platform facts this package relies on. Unless said otherwise the source is the official guide
自定义机器人使用指南 (Feishu Open Platform, "Custom bot usage guide"),
https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
(also https://open.feishu.cn/document/ukTMukTMukTM/ucTM5YjL3ETO24yNxkjN):

- The webhook is `https://open.feishu.cn/open-apis/bot/v2/hook/xxxxxxxxxxxxxxxxx`, called with HTTP POST
  and `Content-Type: application/json`.
- "自定义机器人的频率控制和普通应用不同，为单租户单机器人 100 次/分钟，5 次/秒" (100 a minute and 5 a
  second per bot); near the hour and half hour "可能出现因系统压力导致的 11232 限流错误".
- "发送消息时，请求体的数据大小不能超过 20 KB"; a malformed or oversized body is answered
  {"code": 9499, "msg": "Bad Request"}.
- Success is {"code": 0, "msg": "success", "data": {}} with the legacy "StatusCode": 0 beside it.
- Security settings, each with its answer: keywords (19024 "Key Words Not Found"; they are looked for in
  text and title values, not in href), IP allow list (19022 "Ip Not Allowed"), signature (19021 "sign
  match fail or timestamp is not within one hour from current time").
- Signature: `timestamp + "\\n" + 密钥` is the string to sign; HmacSHA256 "of the empty string" with it
  (the Java/Go/Python samples use it as the HMAC key and sign an empty message), Base64-encoded; the
  timestamp is Unix seconds "距当前时间不超过 1 小时（3600 秒）"; the body carries "timestamp" (a string)
  and "sign" beside msg_type and content.
- Rich text: {"msg_type": "post", "content": {"post": {"zh_cn": {"title": ..., "content": [[node, ...],
  ...]}}}}, one inner array per paragraph; nodes text {text, un_escape?}, a {text, href}
  ("你需要确保链接地址的合法性，否则消息会发送失败"), at {user_id, user_name?}, img {image_key}.
- A card: {"msg_type": "interactive", "card": {...}} (the card object in place of content).

Not in the guide, and so not confirmed by an official source (taken from what public client code records
of the platform's answers; the code treats them as such): 9499 with msg "too many request" (HTTP 400) over
the rate limits; 19001 "param invalid: incoming webhook access token invalid" for a token that is not (or
no longer) a bot's; 19007 "Bot Not Enabled"; whether HTTP 429 is ever answered; whether "20 KB" means
20,000 or 20,480 bytes (20,000 is used); whether an empty text node (our blank line) is accepted.

Why rich text and not a card: a post is exactly our document's shape (lines of text and links), its text
nodes are literal (no Markdown to escape, where a card's markdown element would read an item title's
`[x](y)` or `<at id=all>`), and it costs fewer bytes per line within the 20 KB, so more of an issue fits
in each message.

Layout of a message (title, then paragraphs; a blank paragraph between blocks):

    title: 嵌入式AI简报 (2020-07-02)              later messages: "...（续）"
    headline / tagline / 阅读网页版 (a)            header
    导读：lead                                     lead, as plain text
    热身小新闻 / • news (a)                        quick news
    【业界新闻】                                   a section header, glued to its first item
    1. [tag] title (a) · source                    an item: numbered line, then its summary lines
    还有 N 条 (a)                                  the last line of a cut section, to the issue page

Bodies are split between blocks (never inside an item) into as few messages as fit; with `max_messages`
the document is trimmed by channels.fitting.fit, section-aware, until it fits that many. The sender
(channels.feishu.transport.FeishuSender) is not imported here, nor by the channel until it opens one:
rendering needs no network stack.
"""

from channels.feishu.address import check_secret, check_token, hook_path, parse_address
from channels.feishu.pacing import MARGIN_SECONDS, PUSHES_PER_MINUTE, PUSHES_PER_SECOND, WINDOWS, robot_pacer
from channels.feishu.payload import (
    FEISHU_BODY_BUDGET,
    FEISHU_MAX_BODY_BYTES,
    SIGNATURE_BYTES,
    FeishuPayload,
    body_bytes,
    encode_body,
    post_lines,
)
from channels.feishu.render import render_feishu
from channels.feishu.signing import TIMESTAMP_TOLERANCE_SECONDS, sign, signature_fields
from channels.pacing import RobotPacer

__all__ = [
    "FEISHU_BODY_BUDGET",
    "FEISHU_MAX_BODY_BYTES",
    "MARGIN_SECONDS",
    "PUSHES_PER_MINUTE",
    "PUSHES_PER_SECOND",
    "SIGNATURE_BYTES",
    "TIMESTAMP_TOLERANCE_SECONDS",
    "WINDOWS",
    "FeishuPayload",
    "RobotPacer",
    "body_bytes",
    "check_secret",
    "check_token",
    "encode_body",
    "hook_path",
    "parse_address",
    "post_lines",
    "render_feishu",
    "robot_pacer",
    "sign",
    "signature_fields",
]
