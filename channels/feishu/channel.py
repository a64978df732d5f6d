"""Feishu (飞书) custom bots as a jianbao channel: the package's address parsing, renderer, signing sender
and per-bot pacer behind channels/channel.py's `Channel` interface.

A subscriber is a group; its address is the custom bot's hook token, stored with the bot's signing secret
when the group's owner turned signature checks on. A delivery is the issue's rich-text messages, pushed in
order to that bot, each signed at the time it is sent. The platform's only documented rates are per bot
(5 a second, 100 a minute), so the sender's pacer spaces each bot's pushes and holds a bot that was told to
wait, and a retry_after never pauses the channel for other groups (`throttles_account = False`).

The sender (aiohttp) is imported only when one is opened: rendering needs no network stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from channels.base import ChannelDown, PushResult, PushStatus
from channels.channel import Channel, Delivery, Outcome, Pace, Rendered
from channels.document import IssueDocument
from channels.feishu.address import check_secret, parse_address
from channels.feishu.payload import FeishuPayload, body_bytes
from channels.feishu.render import render_feishu
from channels.feishu.settings import FeishuSettings
from channels.pacing import paced_push
from channels.parts import push_parts

if TYPE_CHECKING:
    from channels.feishu.transport import FeishuSender

__all__ = ["FEISHU", "FeishuChannel", "FeishuSettings"]

API_URL_VARIABLE = "JIANBAO_FEISHU_API_URL"


class FeishuChannel(Channel[FeishuSettings]):
    name: ClassVar[str] = "feishu"
    label: ClassVar[str] = "Feishu group bot (飞书群机器人)"
    settings: ClassVar[type[FeishuSettings]] = FeishuSettings
    fits_messages: ClassVar[bool] = True
    # 5 a second and 100 a minute are each bot's own limits: one bot told to wait holds no other group back.
    throttles_account: ClassVar[bool] = False

    def check_address(self, address: str) -> str:
        """The bot's hook token, from the token itself or the official webhook URL (no other host: no
        SSRF)."""
        return parse_address(address)

    def check_secret(self, secret: str | None) -> str | None:
        """The bot's signing secret when it has one (None for none); BadInput when it cannot be one."""
        return check_secret(secret)

    def off_reason(self, settings: FeishuSettings) -> str:
        return _api_url_problem(settings.feishu_api_url)

    def rate(self, settings: FeishuSettings) -> float:
        # No limit over all of a tenant's bots is documented: 自定义机器人使用指南 (https://open.feishu.cn/
        # document/client-docs/bot-v3/add-custom-bot) names only "单租户单机器人 100 次/分钟，5 次/秒", per
        # bot, which the sender's pacer keeps.
        return 0.0

    def render(
        self, document: IssueDocument, settings: FeishuSettings, *, max_messages: int | None = None
    ) -> Rendered:
        payload = render_feishu(document, max_messages=max_messages)
        sizes = {
            "messages": len(payload.messages),
            "bytes": [body_bytes(message) for message in payload.messages],  # before signing
        }
        return Rendered(payload, payload.links, parts=len(payload.messages), sizes=sizes)

    async def open_sender(self, settings: FeishuSettings) -> FeishuSender:
        reason = self.off_reason(settings)
        if reason:
            raise ChannelDown(f"feishu: {reason}")
        from channels.feishu.transport import FeishuSender  # here: aiohttp only when sending

        return FeishuSender(
            settings.feishu_api_url,
            timeout=settings.send_timeout,
            connections=max(1, settings.worker_concurrency),
        )

    async def deliver(self, sender: Any, rendered: Rendered, delivery: Delivery, pace: Pace) -> Outcome:
        bots: FeishuSender = sender
        payload = rendered.payload
        if not isinstance(payload, FeishuPayload):
            raise TypeError(f"feishu cannot deliver a {type(payload).__name__}")
        token = delivery.address
        if token is None:
            missing = PushResult(PushStatus.FAILED, error="feishu: a delivery without a hook token")
            return Outcome(missing, delivery.parts_done, delivery.message_id)

        async def push(body: dict[str, Any]) -> PushResult:
            return await paced_push(bots.pacer, token, pace, lambda: bots.push(token, body, delivery.secret))

        return await push_parts(payload.messages, delivery, pace, push)


def _api_url_problem(url: str) -> str:
    # Imported here: channels.webhook loads aiohttp, which rendering does not need.
    from channels.webhook import api_url_problem

    return api_url_problem(url, API_URL_VARIABLE, "Feishu")


FEISHU = FeishuChannel()
