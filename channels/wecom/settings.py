"""WeCom's own settings (JIANBAO_WECOM_...), beside those every channel reads (channels/settings.py)."""

from __future__ import annotations

from pydantic import Field

from channels.settings import SharedSettings


class WeComSettings(SharedSettings):
    wecom_api_url: str = Field(
        default="https://qyapi.weixin.qq.com",
        description="WeCom (企业微信) group-robot webhook API root. Empty: WeCom is off.",
    )
