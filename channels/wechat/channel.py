"""WeChat (公众号) as a `Channel`: openids for addresses; an issue goes out as one mass send to every follower
(a draft, then sendall) and, when a broadcast asks for it, as customer-service texts to the followers who
wrote within the last 48 hours.

The mass delivery records the draft's media_id as its first part, so a retry reuses the draft, and sends
with a clientmsgid fixed per broadcast, so a resend after a crash is answered 45065 ("already sent")
instead of reaching followers twice.

An editor's test send is the article as followers get it, not the customer-service text: a draft, then
message/mass/preview to the editor's openid, which reaches that one follower and uses no mass-send quota.

aiohttp and the API client are imported when a sender is opened, not with this module.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from channels.base import ChannelDown, PushResult, PushStatus, utf8_bytes
from channels.channel import Channel, Delivery, Outcome, Pace, Plan, Rendered, Window
from channels.document import IssueDocument
from channels.wechat.render import WeChatPayload, render_wechat
from channels.wechat.settings import WeChatSettings
from content.errors import BadInput

if TYPE_CHECKING:
    import aiohttp

    from channels.wechat.api import WeChatApi

__all__ = ["SKIP_WINDOW", "WECHAT", "WECHAT_WINDOW", "WeChatChannel", "WeChatOutbox", "WeChatSettings"]

# WeChat customer-service window (docs/channels.md, "Customer-service messages";
# https://developers.weixin.qq.com/doc/subscription/guide/product/kf/intro.html).
WECHAT_WINDOW = dt.timedelta(hours=48)
SKIP_WINDOW = "outside WeChat's 48 h window"
# The mass send's steps: draft/add, then message/mass/sendall (a test send: draft/add, then mass/preview).
MASS_PARTS = 2
NO_COVER = "JIANBAO_WECHAT_THUMB_MEDIA_ID is not set (the cover)"

# Openids: 28 characters in practice; the documented alphabet is [A-Za-z0-9_-].
_OPENID = re.compile(r"[A-Za-z0-9_-]{28,64}")


@dataclass
class WeChatOutbox:
    """A worker's WeChat sender: the API client on its own HTTP session, and the mass send's cover."""

    session: aiohttp.ClientSession
    api: WeChatApi
    thumb_media_id: str

    async def close(self) -> None:
        await self.session.close()


class WeChatChannel(Channel[WeChatSettings]):
    name: ClassVar[str] = "wechat"
    label: ClassVar[str] = "WeChat"
    settings: ClassVar[type[WeChatSettings]] = WeChatSettings

    def check_address(self, address: str) -> str:
        address = address.strip(" ")
        if not _OPENID.fullmatch(address):
            raise BadInput("a WeChat openid is 28-64 characters of A-Z, a-z, 0-9, _ and -")
        return address

    def off_reason(self, settings: WeChatSettings) -> str:
        missing = [
            name
            for name, value in (
                ("JIANBAO_WECHAT_APPID", settings.wechat_appid),
                ("JIANBAO_WECHAT_SECRET", settings.wechat_secret),
            )
            if not value
        ]
        if not missing:
            return ""
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set"

    def render(
        self, document: IssueDocument, settings: WeChatSettings, *, max_messages: int | None = None
    ) -> Rendered:
        if max_messages is not None:
            raise BadInput(
                "--max-messages only applies to channels that send several messages (not wechat: one "
                "article, one text)"
            )
        payload = render_wechat(document)
        return Rendered(
            payload=payload,
            links=payload.links,
            parts=MASS_PARTS,
            sizes={"title": payload.article.title, "text_bytes": utf8_bytes(payload.text)},
        )

    def plan(self, options: Mapping[str, Any]) -> Plan:
        # The mass send reaches every follower; customer-service texts only when the broadcast asks.
        return Plan(mass=True, direct=bool(options.get("wechat_text")))

    def window(self, now: dt.datetime) -> Window:
        # Customer-service texts reach only followers who wrote within the last 48 hours.
        return Window(since=now - WECHAT_WINDOW, reason=SKIP_WINDOW)

    async def open_sender(self, settings: WeChatSettings) -> WeChatOutbox:
        import aiohttp

        from channels.wechat.api import WeChatApi

        session = aiohttp.ClientSession()
        api = WeChatApi(
            session,
            base_url=settings.wechat_api_url,
            appid=settings.wechat_appid,
            secret=settings.wechat_secret,
        )
        api.timeout = settings.send_timeout
        return WeChatOutbox(session, api, settings.wechat_thumb_media_id)

    async def deliver(
        self, sender: WeChatOutbox, rendered: Rendered, delivery: Delivery, pace: Pace
    ) -> Outcome:
        payload = rendered.payload
        if not isinstance(payload, WeChatPayload):
            raise TypeError(f"wechat cannot send a {type(payload).__name__}")
        if delivery.mass:
            return await _mass(sender, payload, delivery, pace)
        return await _text(sender, payload, delivery, pace)

    async def test_send(self, sender: WeChatOutbox, rendered: Rendered, address: str) -> Outcome:
        """The article to one openid as a mass-send preview: draft/add, then message/mass/preview (the
        default, a customer-service text, would show the editor the wrong message and only within 48 h
        of their last one). Like every test send it never touches the ledger."""
        from channels.wechat.api import CredentialError, WeChatApiError, WeChatUnreachable

        openid = self.check_address(address)
        payload = rendered.payload
        if not isinstance(payload, WeChatPayload):
            raise TypeError(f"wechat cannot send a {type(payload).__name__}")
        if not sender.thumb_media_id:
            return Outcome(PushResult(PushStatus.FAILED, error=NO_COVER), 0)
        try:
            media_id = await _add_draft(sender, payload)
            # Only a CredentialError comes out of the preview: its outcome is in `pushed`.
            pushed = await sender.api.mass_preview(media_id, openid)
        except CredentialError as error:
            raise ChannelDown(f"wechat: {error.message}") from None
        except WeChatUnreachable as error:  # the draft: nothing reached anyone
            return Outcome(PushResult(PushStatus.RETRY, error=error.message), 0)
        except WeChatApiError as error:
            return Outcome(PushResult(PushStatus.FAILED, error=error.message), 0)
        if pushed.status in (PushStatus.SENT, PushStatus.UNCERTAIN):
            message_id = f"{media_id} {pushed.message_id}" if pushed.message_id else media_id
            uncertain = pushed.status == PushStatus.UNCERTAIN
            pushed = PushResult(pushed.status, message_id, pushed.error)
            return Outcome(pushed, MASS_PARTS, message_id, uncertain)
        return Outcome(pushed, 1, media_id)


async def _add_draft(sender: WeChatOutbox, payload: WeChatPayload) -> str:
    """draft/add with the issue's article and the account's cover; the draft's media_id."""
    article = payload.article.to_dict() | {"thumb_media_id": sender.thumb_media_id}
    return await sender.api.add_draft(article)


async def _mass(sender: WeChatOutbox, payload: WeChatPayload, delivery: Delivery, pace: Pace) -> Outcome:
    """draft/add (unless an earlier attempt got that far: its media_id is the delivery's message_id), then
    the mass send."""
    from channels.wechat.api import CredentialError, WeChatApiError, WeChatUnreachable

    if not sender.thumb_media_id:
        return Outcome(PushResult(PushStatus.FAILED, error=NO_COVER), 0)
    media_id = delivery.message_id if delivery.parts_done >= 1 else None
    try:
        if media_id is None:
            media_id = await _add_draft(sender, payload)
            await pace.reached(1, media_id)
        pushed = await sender.api.mass_send(
            media_id, f"jianbao-{delivery.issue_date}-{delivery.broadcast_id}"
        )
    except CredentialError as error:
        raise ChannelDown(f"wechat: {error.message}") from None
    except WeChatUnreachable as error:
        pushed = PushResult(PushStatus.RETRY, error=error.message)
    except WeChatApiError as error:
        pushed = PushResult(PushStatus.FAILED, error=error.message)
    if pushed.status == PushStatus.SENT:
        message_id = f"{media_id} {pushed.message_id}" if pushed.message_id else media_id
        return Outcome(PushResult(PushStatus.SENT, message_id, pushed.error), MASS_PARTS, message_id)
    return Outcome(pushed, 1 if media_id else 0, media_id)


async def _text(sender: WeChatOutbox, payload: WeChatPayload, delivery: Delivery, pace: Pace) -> Outcome:
    """One customer-service text."""
    from channels.wechat.api import CredentialError

    if delivery.address is None:
        raise ValueError("a WeChat text delivery needs an openid")
    await pace.slot()
    try:
        pushed = await sender.api.push_text(delivery.address, payload.text)
    except CredentialError as error:
        raise ChannelDown(f"wechat: {error.message}") from None
    if pushed.status in (PushStatus.SENT, PushStatus.UNCERTAIN):
        return Outcome(pushed, 1, uncertain=pushed.status == PushStatus.UNCERTAIN)
    return Outcome(pushed, 0)


WECHAT = WeChatChannel()
