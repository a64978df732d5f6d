"""The WeChat official account (公众号) chat: the /wechat webhook and its dialog.

- protocol: signatures, freshness, safe XML, safe mode's AES envelope, text replies (no web server)
- webhook: the route, delivery dedupe, the 5 s deadline and late answers by customer-service message
- dialog: follow/unfollow, 订阅 退订 最新 更多 帮助 and keyword search, as reply texts
(The article and text renderers, the REST client and the channel itself are in channels/wechat/.)
"""

from bot.wechat.webhook import REPLY_DEADLINE, WECHAT, WeChatState, setup

__all__ = ["REPLY_DEADLINE", "WECHAT", "WeChatState", "setup"]
