"""The WeChat official account (公众号) channel: the /wechat webhook, its dialog and the REST client.

- protocol: signatures, freshness, safe XML, safe mode's AES envelope, text replies (no web server)
- webhook: the route, delivery dedupe, the 5 s deadline and late answers by customer-service message
- dialog: follow/unfollow, 订阅 退订 最新 更多 帮助 and keyword search, as reply texts
- api: access tokens and customer-service messages over aiohttp, with WeChat's error codes as exceptions
- cache: the bounded TTL cache behind delivery dedupe and 更多
"""

from bot.wechat.webhook import REPLY_DEADLINE, WECHAT, WeChatState, setup

__all__ = ["REPLY_DEADLINE", "WECHAT", "WeChatState", "setup"]
