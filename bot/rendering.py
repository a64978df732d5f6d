"""Rendering an issue for a channel with the link policy the settings ask for.

The renderers in channels/ are pure; this is where settings (public URL, tracking, UTM, secret key)
become their link policy, and where a channel is looked up by name in the registry. One Renderer per
process: it holds the Markdown parser that turns summaries into runs, which is worth building once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from bot.settings import Settings
from channels.channel import Rendered
from channels.document import IssueDocument, build_document, summary_parser, with_focus
from channels.links import LinkPolicy, LinkRewriter
from channels.registry import ChannelRegistry, channel_registry
from content.model import Issue

# The public archive pages: not a channel that sends, but their links follow the same policy.
WEB = "web"


class Renderer:
    def __init__(self, settings: Settings, channels: ChannelRegistry | None = None) -> None:
        self._settings = settings
        self.channels = channels if channels is not None else channel_registry(settings.channel_plugins)
        # Without a configured key, tracking tokens are signed with a key that dies with the process:
        # links rendered now cannot be redeemed after a restart, which is right for a preview.
        self._secret = settings.secret_key.encode() if settings.secret_key else secrets.token_bytes(32)
        self._md = summary_parser()

    def policy(self, channel: str) -> LinkPolicy:
        return LinkPolicy(
            channel=channel,
            public_url=self._settings.public_url or None,
            tracking=self._settings.track_links,
            utm=self._settings.utm,
            secret=self._secret,
            # Only a channel that personalises each delivery can give a link its reader's id.
            readers=self._settings.track_subscribers
            and channel in self.channels
            and self.channels.get(channel).personal_links,
        )

    def document(self, issue: Issue, channel: str) -> IssueDocument:
        """The issue as every renderer reads it, its links rewritten for `channel` (or WEB)."""
        return build_document(issue, LinkRewriter(self.policy(channel), issue.date), self._md)

    def render(
        self,
        issue: Issue,
        channel: str,
        *,
        max_messages: int | None = None,
        focus: Sequence[tuple[int, int]] = (),
    ) -> Rendered:
        """The issue as `channel` sends it; BadInput for an unknown channel, DoesNotFit when it cannot fit.

        `focus`: the items (section index, item index) a reader's topics pick (TopicMatcher.focus),
        listed first in a "你关注的" block; the rest of the issue follows as usual.
        """
        found = self.channels.get(channel)
        document = self.document(issue, channel)
        if focus:
            document = with_focus(document, focus)
        return found.render(document, self._settings, max_messages=max_messages)
