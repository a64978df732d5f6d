"""WeChat official account (公众号).

- render.py: `render_wechat(document)` gives the draft/add article (inline styles only, outside links as
  numbered 引用链接) and a compact text for replies and customer-service pushes, each fitted to its budget.
- api.py: the REST API over aiohttp (stable access token, customer-service texts, drafts, mass sends), its
  error codes as a small exception hierarchy. Imported by the sender only, so it is not re-exported here.
- channel.py: the `Channel` (addresses are openids; a broadcast is one mass send, plus customer-service
  texts to followers within the 48 h window when asked).
"""

from channels.wechat.channel import WECHAT, WECHAT_WINDOW, WeChatChannel
from channels.wechat.render import (
    WECHAT_CONTENT_MAX_CHARS,
    WECHAT_TEXT_MAX_BYTES,
    WECHAT_TITLE_MAX,
    WeChatArticle,
    WeChatPayload,
    render_wechat,
)
from channels.wechat.settings import WeChatSettings

__all__ = [
    "WECHAT",
    "WECHAT_CONTENT_MAX_CHARS",
    "WECHAT_TEXT_MAX_BYTES",
    "WECHAT_TITLE_MAX",
    "WECHAT_WINDOW",
    "WeChatArticle",
    "WeChatChannel",
    "WeChatPayload",
    "WeChatSettings",
    "render_wechat",
]
