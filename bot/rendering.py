"""Rendering an issue for a channel with the link policy the settings ask for.

The renderers in channels/ are pure; this is where settings (public URL, tracking, UTM, secret key,
sender address) become their arguments. One Renderer per process: it holds the Markdown parser that
turns summaries into runs, which is worth building once.
"""

from __future__ import annotations

import secrets
from typing import Literal

from bot.settings import Settings
from channels.document import IssueDocument, build_document, summary_parser
from channels.email import EmailTemplate, render_email
from channels.links import LinkPolicy, LinkRewriter
from channels.telegram import TelegramPayload, render_telegram
from channels.wechat import WeChatPayload, render_wechat
from content.model import Issue

Channel = Literal["telegram", "wechat", "email", "web"]  # "web": the public archive pages
CHANNELS: tuple[Channel, ...] = ("telegram", "wechat", "email")


class Renderer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Without a configured key, tracking tokens are signed with a key that dies with the process:
        # links rendered now cannot be redeemed after a restart, which is right for a preview.
        self._secret = settings.secret_key.encode() if settings.secret_key else secrets.token_bytes(32)
        self._md = summary_parser()

    def policy(self, channel: Channel) -> LinkPolicy:
        return LinkPolicy(
            channel=channel,
            public_url=self._settings.public_url or None,
            tracking=self._settings.track_links,
            utm=self._settings.utm,
            secret=self._secret,
        )

    def document(self, issue: Issue, channel: Channel) -> IssueDocument:
        return build_document(issue, LinkRewriter(self.policy(channel), issue.date), self._md)

    def telegram(self, issue: Issue, max_messages: int | None = None) -> TelegramPayload:
        return render_telegram(self.document(issue, "telegram"), max_messages=max_messages)

    def wechat(self, issue: Issue) -> WeChatPayload:
        return render_wechat(self.document(issue, "wechat"))

    def email(self, issue: Issue) -> EmailTemplate:
        return render_email(self.document(issue, "email"), mail_from=self._settings.mail_from)
