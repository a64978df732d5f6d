"""Feishu's own settings (JIANBAO_FEISHU_...), beside those every channel reads (channels/settings.py)."""

from __future__ import annotations

from pydantic import Field

from channels.settings import SharedSettings


class FeishuSettings(SharedSettings):
    feishu_api_url: str = Field(
        default="https://open.feishu.cn",
        description="Feishu (飞书) custom-bot webhook API root. Empty: Feishu is off.",
    )
