"""The channels jianbao knows, by name: the built-in ones listed here, and plug-ins named in settings.

Adding a channel to jianbao is a folder in channels/ with a `Channel` (channels/channel.py), its templates,
and one line in BUILT_IN below (its settings model joins `ChannelSettings` on the line after). A channel
kept elsewhere is loaded by JIANBAO_CHANNEL_PLUGINS ("package.module:CHANNEL", comma-separated); it reads
its own settings from the environment.

The registry is built by whoever needs it (the app's composition root, a command) and passed on: nothing
here is module state beyond the constant list of built-in channels.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from typing import Any

from channels.channel import Channel
from channels.email.channel import EMAIL, EmailSettings
from channels.feishu.channel import FEISHU, FeishuSettings
from channels.telegram.channel import TELEGRAM, TelegramSettings
from channels.wechat.channel import WECHAT, WeChatSettings
from channels.wecom.channel import WECOM, WeComSettings
from content.errors import BadInput

# The order is the order of every listing (status pages, `render --channel` help, broadcast channels).
BUILT_IN: tuple[Channel[Any], ...] = (WECHAT, TELEGRAM, EMAIL, WECOM, FEISHU)


class ChannelSettings(WeChatSettings, TelegramSettings, EmailSettings, WeComSettings, FeishuSettings):
    """Every built-in channel's own settings (and, through them, channels.settings.SharedSettings)."""


# A channel name is stored in every subscriber and delivery row (storage/tables.py: String(16)).
MAX_NAME_LENGTH = 16


class ChannelRegistry:
    def __init__(self, channels: Iterable[Channel[Any]]) -> None:
        self._channels: dict[str, Channel[Any]] = {}
        for channel in channels:
            if not channel.name.isidentifier() or len(channel.name) > MAX_NAME_LENGTH:
                raise ValueError(f"channel name {channel.name!r}: an identifier of at most {MAX_NAME_LENGTH}")
            if channel.name in self._channels:
                raise ValueError(f"two channels are named {channel.name!r}")
            self._channels[channel.name] = channel

    def __iter__(self) -> Iterator[Channel[Any]]:
        return iter(self._channels.values())

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._channels)

    def get(self, name: str) -> Channel[Any]:
        """The channel called `name`, or BadInput listing the known ones."""
        found = self._channels.get(name)
        if found is None:
            raise BadInput(f"unknown channel {name[:20]!r}: use one of {', '.join(self._channels)}")
        return found

    def check_address(self, name: str, address: str) -> str:
        return self.get(name).check_address(address)

    def address_key(self, name: str, address: str) -> str:
        """What the subscriber table's unique key holds; an unknown channel (a plug-in no longer loaded)
        compares exactly."""
        found = self._channels.get(name)
        return found.address_key(address) if found is not None else address

    def off_reasons(self, settings: Any) -> dict[str, str]:
        """channel -> why it cannot send broadcasts ("" when it can), in registry order."""
        return {channel.name: channel.off_reason(settings) for channel in self}

    def sending(self, settings: Any) -> tuple[str, ...]:
        return tuple(name for name, reason in self.off_reasons(settings).items() if not reason)


def load_plugin(reference: str) -> Channel[Any]:
    """A channel named as "package.module:ATTRIBUTE"; ValueError with one line when it is not one."""
    module_name, _, attribute = reference.strip().partition(":")
    if not module_name or not attribute:
        raise ValueError(f"channel plug-in {reference!r}: write it as package.module:ATTRIBUTE")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"channel plug-in {reference!r}: cannot import {module_name} ({error})") from None
    channel = getattr(module, attribute, None)
    if not isinstance(channel, Channel):
        raise ValueError(f"channel plug-in {reference!r}: {attribute} is not a channels.channel.Channel")
    return channel


def channel_registry(plugins: str = "") -> ChannelRegistry:
    """The built-in channels and the plug-ins listed (comma-separated references)."""
    extra = [load_plugin(reference) for reference in plugins.split(",") if reference.strip()]
    return ChannelRegistry([*BUILT_IN, *extra])
