"""A throwaway channel kept outside jianbao ("pigeon"), loaded as a plug-in by
JIANBAO_CHANNEL_PLUGINS=tests.channels.pigeon:PIGEON. No file of bot/ or storage/ knows it: the test that
uses it (tests/bot/broadcast/test_plugin_channel.py) shows a channel flows through render, subscribers,
broadcast send, the worker and broadcast status on the registry alone.

It posts each section of an issue as one JSON message {"loft": ADDRESS, "text": ...} to JIANBAO_PIGEON_URL
(a recording server the test runs on loopback).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base import PushResult, PushStatus
from channels.channel import Channel, Delivery, Outcome, Pace, Rendered
from channels.document import IssueDocument
from channels.links import RewrittenLink
from channels.parts import push_parts
from content.errors import BadInput

_LOFT = re.compile(r"[a-z]{3,20}")


class PigeonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JIANBAO_PIGEON_", env_file=".env", extra="ignore")

    url: str = Field(default="", description="Where the pigeon's loft accepts messages.")


@dataclass(frozen=True, slots=True)
class PigeonPayload:
    messages: tuple[str, ...]
    links: tuple[RewrittenLink, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "channel": "pigeon",
            "messages": list(self.messages),
            "links": [link.to_dict() for link in self.links],
        }

    def preview(self) -> str:
        return "\n--\n".join(self.messages)


class PigeonSender:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()


class PigeonChannel(Channel[Any]):
    name = "pigeon"
    label = "Carrier pigeon"
    settings = PigeonSettings
    fits_messages = True

    def check_address(self, address: str) -> str:
        address = address.strip()
        if not _LOFT.fullmatch(address):
            raise BadInput("a pigeon loft is 3-20 lowercase letters")
        return address

    def off_reason(self, settings: Any) -> str:
        return "" if PigeonSettings().url else "JIANBAO_PIGEON_URL is not set"

    def render(self, document: IssueDocument, settings: Any, *, max_messages: int | None = None) -> Rendered:
        messages = [f"{document.title}"]
        for section in document.sections:
            lines = [
                f"【{section.name}】",
                *(f"- {item.title} {item.url or ''}".strip() for item in section.items),
            ]
            messages.append("\n".join(lines))
        if max_messages is not None and len(messages) > max_messages:
            messages = [*messages[: max_messages - 1], "\n\n".join(messages[max_messages - 1 :])]
        payload = PigeonPayload(tuple(messages), document.links)
        return Rendered(payload, document.links, parts=len(messages), sizes={"messages": len(messages)})

    async def open_sender(self, settings: Any) -> PigeonSender:
        return PigeonSender(PigeonSettings().url)

    async def deliver(self, sender: Any, rendered: Rendered, delivery: Delivery, pace: Pace) -> Outcome:
        assert isinstance(sender, PigeonSender)
        assert isinstance(rendered.payload, PigeonPayload)

        async def push(text: str) -> PushResult:
            await pace.slot()
            async with sender.session.post(
                sender.url, json={"loft": delivery.address, "text": text}
            ) as answer:
                if answer.status == 200:
                    return PushResult(PushStatus.SENT, message_id=(await answer.json())["id"])
                return PushResult(PushStatus.RETRY, error=f"HTTP {answer.status}")

        return await push_parts(rendered.payload.messages, delivery, pace, push)


PIGEON = PigeonChannel()
