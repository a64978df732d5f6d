"""What the console's preview page shows of each channel: `render`'s own output, not a second renderer.

`channel_previews` renders the issue once per registered channel (the same `Renderer.render` that
`jianbao render` and the broadcast worker call) and turns each payload into what the page draws: the
Telegram messages as bubbles, the WeChat article (shown in a 375 px phone frame, from its own URL) and its
2 KB text reply, the email (a 600 px sandboxed frame), and for the group robots their messages as text.
Each comes with its sizes against the platform's limits and with what fitting cut ("还有 N 条" per
section). The payload is told apart by its type: the page's layout is per kind of payload, and the
rest of the code still never compares a channel's name with a string.

Rendering is CPU work (Markdown, Jinja2, css-inline: tens of milliseconds an issue per channel), so the
route calls this in a worker thread; it builds its own Renderer there, whose Markdown parser no other
thread touches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from markupsafe import Markup

from bot.rendering import Renderer
from bot.settings import Settings
from channels.base import utf8_bytes, utf16_units
from channels.email.render import EMAIL_HTML_MAX_BYTES, SUBJECT_MAX_CHARS, EmailTemplate
from channels.fitting import DoesNotFit
from channels.registry import ChannelRegistry
from channels.telegram.payload import TELEGRAM_MAX_TEXT, TelegramPayload
from channels.wechat.render import WECHAT_CONTENT_MAX_CHARS, WECHAT_TEXT_MAX_BYTES, WeChatPayload
from content.model import Issue

# The kinds of preview the template knows how to draw.
BUBBLES = "bubbles"
PHONE = "phone"
MAIL = "mail"
TEXT = "text"


@dataclass(frozen=True, slots=True)
class Measure:
    """One size against its limit, e.g. a message's 3,812 of 4,096 characters."""

    label: str
    value: int
    limit: int

    @property
    def fits(self) -> bool:
        return self.value <= self.limit

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.value / self.limit)) if self.limit else 0


@dataclass
class ChannelPreview:
    name: str
    label: str
    kind: str  # BUBBLES, PHONE, MAIL or TEXT
    off_reason: str = ""  # why the channel cannot send (it still previews)
    error: str = ""  # the issue cannot be made to fit this channel
    # BUBBLES: each message's Telegram HTML (our renderer's escaped output: b, i, a href only).
    bubbles: list[Markup] = field(default_factory=list)
    text: str = ""  # TEXT: the robot messages as people read them
    reply: Markup = field(
        default_factory=Markup
    )  # PHONE: the text reply as WeChat shows it (its <a href> links are links)
    subject: str = ""  # MAIL
    frame: bool = False  # PHONE and MAIL: the article or mail is drawn from the channel's frame URL
    measures: list[Measure] = field(default_factory=list)
    cuts: list[tuple[str, int]] = field(default_factory=list)  # (section, items left out)
    digest: bool = False  # rendered as the one-message digest

    @property
    def cut_total(self) -> int:
        return sum(count for _, count in self.cuts)


def channel_previews(
    settings: Settings, channels: ChannelRegistry, issue: Issue, *, digest: bool = False
) -> list[ChannelPreview]:
    renderer = Renderer(settings, channels)
    reasons = channels.off_reasons(settings)
    previews = []
    for channel in channels:
        one = digest and channel.fits_messages
        try:
            rendered = renderer.render(issue, channel.name, max_messages=1 if one else None)
        except DoesNotFit as error:
            previews.append(ChannelPreview(channel.name, channel.label, TEXT, error=f"放不下：{error}"))
            continue
        preview = _preview(channel.name, channel.label, rendered.payload)
        preview.off_reason = reasons.get(channel.name, "")
        preview.digest = one
        previews.append(preview)
    return previews


def frame_document(settings: Settings, channels: ChannelRegistry, issue: Issue, name: str) -> str | None:
    """The HTML a channel's preview frame shows (the email, or the WeChat article in a phone-sized
    page); None for a channel that has no frame."""
    payload = Renderer(settings, channels).render(issue, name).payload
    if isinstance(payload, EmailTemplate):
        return str(payload.to_dict()["html"])
    if isinstance(payload, WeChatPayload):
        return _ARTICLE_PAGE.format(
            title=Markup.escape(payload.article.title), content=payload.article.content
        )
    return None


# The article's content is a fragment with inline styles (what draft/add gets); WeChat shows it in its
# own page, whose width is the phone's. The frame's CSP allows inline styles and nothing else.
_ARTICLE_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body style="margin:0;padding:16px;font-family:-apple-system,'PingFang SC','WenQuanYi Micro Hei',sans-serif">
<h1 style="font-size:22px;line-height:1.4">{title}</h1>
{content}
</body></html>"""


def _preview(name: str, label: str, payload: object) -> ChannelPreview:
    cuts = _cuts(payload)
    if isinstance(payload, TelegramPayload):
        return ChannelPreview(
            name,
            label,
            BUBBLES,
            # Markup: the renderer escaped every text it took from the issue; its tags are Telegram's
            # b/i/a subset, and the console's CSP refuses scripts whatever a link says.
            bubbles=[Markup(message.text) for message in payload.messages],  # noqa: S704
            measures=[
                Measure(f"第 {number} 条", message.length, TELEGRAM_MAX_TEXT)
                for number, message in enumerate(payload.messages, 1)
            ],
            cuts=cuts,
        )
    if isinstance(payload, WeChatPayload):
        return ChannelPreview(
            name,
            label,
            PHONE,
            reply=wechat_text_markup(payload.text),
            frame=True,
            measures=[
                Measure("图文正文（字符）", utf16_units(payload.article.content), WECHAT_CONTENT_MAX_CHARS),
                Measure("文本回复（字节）", utf8_bytes(payload.text), WECHAT_TEXT_MAX_BYTES),
            ],
            cuts=cuts,
        )
    if isinstance(payload, EmailTemplate):
        return ChannelPreview(
            name,
            label,
            MAIL,
            subject=payload.subject,
            frame=True,
            measures=[
                Measure("HTML（字节）", payload.html_worst_bytes, EMAIL_HTML_MAX_BYTES),
                Measure("主题（字符）", len(payload.subject), SUBJECT_MAX_CHARS),
            ],
            cuts=cuts,
        )
    preview = getattr(payload, "preview", None)
    text = preview() if callable(preview) else ""
    return ChannelPreview(name, label, TEXT, text=str(text), cuts=cuts)


# WeChat's text messages may hold <a href="...">links</a>, which the chat shows as links; nothing else
# in them is markup.
_TEXT_LINK = re.compile(r'<a href="([^"<>]*)">([^<]*)</a>')


def wechat_text_markup(text: str) -> Markup:
    """The text reply as the chat shows it: every character escaped, except its http(s) links."""
    parts: list[Markup] = []
    position = 0
    for link in _TEXT_LINK.finditer(text):
        parts.append(Markup.escape(text[position : link.start()]))
        url, label = link.group(1), link.group(2)  # WeChat shows entities literally: none to decode
        if urlsplit(url).scheme in ("http", "https"):
            parts.append(Markup('<a href="{}">{}</a>').format(url, label))
        else:
            parts.append(Markup.escape(link.group(0)))
        position = link.end()
    parts.append(Markup.escape(text[position:]))
    return Markup("").join(parts)


def _cuts(payload: object) -> list[tuple[str, int]]:
    document = getattr(payload, "document", None)
    sections = getattr(document, "sections", ())
    return [(section.name, section.omitted) for section in sections if section.omitted]
