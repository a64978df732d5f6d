"""WeCom (企业微信) group robots as a jianbao channel: the package's address parsing, renderer, sender and
per-robot pacer behind channels/channel.py's `Channel` interface.

A subscriber is a group; its address is the group robot's key. A delivery is the issue's markdown
messages, pushed in order to that robot. The platform's only documented rate is per robot (20 a minute),
so the sender's pacer spaces each robot's pushes and holds a robot that was told to wait, and a
retry_after never pauses the channel for other groups (`throttles_account = False`).

The sender (aiohttp) is imported only when one is opened: rendering needs no network stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from channels.base import ChannelDown, PushResult, PushStatus
from channels.channel import Channel, Delivery, Outcome, Pace, Rendered
from channels.document import IssueDocument
from channels.pacing import paced_push
from channels.parts import push_parts
from channels.wecom.address import parse_address
from channels.wecom.payload import WeComPayload, content_bytes
from channels.wecom.render import render_wecom
from channels.wecom.settings import WeComSettings

if TYPE_CHECKING:
    from channels.wecom.transport import WeComSender

__all__ = ["WECOM", "WeComChannel", "WeComSettings"]

API_URL_VARIABLE = "JIANBAO_WECOM_API_URL"


class WeComChannel(Channel[WeComSettings]):
    name: ClassVar[str] = "wecom"
    label: ClassVar[str] = "WeCom group robot (企业微信群机器人)"
    settings: ClassVar[type[WeComSettings]] = WeComSettings
    fits_messages: ClassVar[bool] = True
    # 20 messages a minute is each robot's own limit: one robot told to wait holds no other group back.
    throttles_account: ClassVar[bool] = False

    def check_address(self, address: str) -> str:
        """The robot's key, from the key itself or the official webhook URL (no other host: no SSRF)."""
        return parse_address(address)

    def off_reason(self, settings: WeComSettings) -> str:
        return _api_url_problem(settings.wecom_api_url)

    def rate(self, settings: WeComSettings) -> float:
        # No account-wide limit is documented: 消息推送配置说明 (https://developer.work.weixin.qq.com/
        # document/path/99110) names only "每个机器人发送的消息不能超过20条/分钟", per robot, which the
        # sender's pacer keeps.
        return 0.0

    def render(
        self, document: IssueDocument, settings: WeComSettings, *, max_messages: int | None = None
    ) -> Rendered:
        payload = render_wecom(document, max_messages=max_messages)
        sizes = {
            "messages": len(payload.messages),
            "bytes": [content_bytes(message) for message in payload.messages],
        }
        return Rendered(payload, payload.links, parts=len(payload.messages), sizes=sizes)

    async def open_sender(self, settings: WeComSettings) -> WeComSender:
        reason = self.off_reason(settings)
        if reason:
            raise ChannelDown(f"wecom: {reason}")
        from channels.wecom.transport import WeComSender  # here: aiohttp only when sending

        return WeComSender(
            settings.wecom_api_url,
            timeout=settings.send_timeout,
            connections=max(1, settings.worker_concurrency),
        )

    async def deliver(self, sender: Any, rendered: Rendered, delivery: Delivery, pace: Pace) -> Outcome:
        robots: WeComSender = sender
        payload = rendered.payload
        if not isinstance(payload, WeComPayload):
            raise TypeError(f"wecom cannot deliver a {type(payload).__name__}")
        key = delivery.address
        if key is None:
            missing = PushResult(PushStatus.FAILED, error="wecom: a delivery without a robot key")
            return Outcome(missing, delivery.parts_done, delivery.message_id)

        async def push(body: dict[str, Any]) -> PushResult:
            return await paced_push(robots.pacer, key, pace, lambda: robots.push(key, body))

        return await push_parts(payload.messages, delivery, pace, push)


def _api_url_problem(url: str) -> str:
    # Imported here: channels.webhook loads aiohttp, which rendering does not need.
    from channels.webhook import api_url_problem

    return api_url_problem(url, API_URL_VARIABLE, "WeCom")


WECOM = WeComChannel()
