"""WeChat's own settings (JIANBAO_WECHAT_...), composed into the service's settings."""

from __future__ import annotations

from pydantic import Field

from channels.settings import SharedSettings


class WeChatSettings(SharedSettings):
    wechat_appid: str = Field(default="", description="WeChat official account AppID.")
    wechat_secret: str = Field(
        default="", description="WeChat AppSecret (access tokens for customer-service and mass sends)."
    )
    wechat_token: str = Field(
        default="", description="WeChat server Token (webhook signatures). Empty: WeChat is off."
    )
    wechat_aes_key: str = Field(
        default="",
        description="WeChat EncodingAESKey (43 characters) for safe mode. Empty: compatible (plain) mode.",
    )
    wechat_api_url: str = Field(default="https://api.weixin.qq.com", description="WeChat API root.")
    wechat_thumb_media_id: str = Field(
        default="",
        description="media_id of the cover image (permanent material) that WeChat mass-send articles need.",
    )
