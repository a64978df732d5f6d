"""WeCom (企业微信): an issue pushed to a group chat through the group's robot (群机器人, renamed "消息推送").

A subscriber's address is the robot's key (address.py). An issue becomes `markdown` request bodies
(render.py, payload.py, markup.py), each POSTed to the robot's webhook (transport.py), paced within the
robot's own limit (pacing.py). channel.py makes all this the `wecom` channel (channels/channel.py's
interface: WECOM, listed in channels/registry.py), with its own settings in settings.py.

Platform facts this package relies on. Unless said otherwise the source is 消息推送配置说明 (WeCom developer
centre; the page was 群机器人配置说明), https://developer.work.weixin.qq.com/document/path/99110 (formerly
https://developer.work.weixin.qq.com/document/path/91770, https://work.weixin.qq.com/api/doc/90000/90136/91770):

- The webhook is `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`, called with HTTP POST, a JSON
  body and "content必须是utf8编码"; the key is the robot's only credential ("一定要保护好…webhook地址").
- A markdown message is {"msgtype": "markdown", "markdown": {"content": ...}}, "markdown内容，最长不超过
  4096个字节，必须是utf8编码" (a text message: 2048 bytes).
- The markdown subset: headings `#` to `######` with a space after them, `**bold**`, `[text](url)`, inline
  `` `code` `` (one line), `> ` quotes, `<font color="info|comment|warning">`; and "<@userid>" in content
  mentions a member. There are no lists and no documented escape character (markup.py's substitutions).
- "消息发送频率限制": "每个机器人发送的消息不能超过20条/分钟" (20 messages a minute, per robot).

From 全局错误码 (the global error codes), https://developer.work.weixin.qq.com/document/path/90313:
-1 系统繁忙 (retry later), 40008 不合法的msgtype参数, 40058 不合法的参数, 44004 文本消息content参数为空,
45002 消息内容大小超过限制, 45009 接口调用超过限制 (a minute-long limit is lifted a minute later),
45033 接口并发调用超过限制, 93000 机器人webhookurl不合法或者机器人已经被移除出群, 93004 机器人被停用,
93008 不在群里.

Not in those pages, and so not confirmed by an official source (taken from the answers public clients
record; the code treats them as such): a robot over its 20 a minute answers errcode 45009 with errmsg "api
freq out of limit"; content over 4096 bytes is errcode 40058 "markdown.content exceed max length 4096";
empty content is 44004 "empty content"; an unknown or removed key is 93000 "invalid webhook url"; errcode
answers come with HTTP 200; the errmsg ends in ", hint: [...], from ip: ..., more info at ...". Whether the
window is sliding or by calendar minute is not documented: the pacer keeps any 60 s within 20.
The official pages themselves are not in this project's reference store: their wording above was checked
against verbatim copies in public repositories (a full copy of 消息推送配置说明 "最后更新：2025/08/07", and
transcriptions of 全局错误码 in WeCom SDKs).

Layout of a message (blocks joined by a blank line; a message never splits a block):

    # 嵌入式AI简报 (2020-07-02)                  header: title heading, headline, grey tagline, issue page
    > 导读：lead                                 lead, as a quote
    **热身小新闻** / • [news](url)              quick news
    **【业界新闻】**                             a section header, glued to its first item
    1. ［tag］ [title](url) · source             an item: numbered line, then its summary lines
    [还有 N 条](url#section-1)                   the last line of a cut section

A message that continues a section starts with "**【名称】**（续）". Full mode packs the blocks greedily
into as few messages as the byte limit allows; with `max_messages` the document is trimmed by
channels.fitting.fit, section-aware, until it packs into that many.

The sender (channels.wecom.transport.WeComSender) is not imported here, nor by the channel until it opens
one: rendering needs no network stack.
"""

from channels.pacing import RobotPacer
from channels.wecom.address import check_key, parse_address
from channels.wecom.pacing import MARGIN_SECONDS, PUSHES_PER_MINUTE, WINDOW_SECONDS, WINDOWS, robot_pacer
from channels.wecom.payload import (
    WECOM_MAX_CONTENT_BYTES,
    WECOM_MAX_TEXT_BYTES,
    WeComPayload,
    content_bytes,
    content_of,
    markdown_body,
    visible_text,
)
from channels.wecom.render import render_wecom

__all__ = [
    "MARGIN_SECONDS",
    "PUSHES_PER_MINUTE",
    "WECOM_MAX_CONTENT_BYTES",
    "WECOM_MAX_TEXT_BYTES",
    "WINDOWS",
    "WINDOW_SECONDS",
    "RobotPacer",
    "WeComPayload",
    "check_key",
    "content_bytes",
    "content_of",
    "markdown_body",
    "parse_address",
    "render_wecom",
    "robot_pacer",
    "visible_text",
]
