"""A WeCom subscriber's address: the key of a group robot (群机器人, now "消息推送"), nothing else.

Pure functions, no network. The group's owner copies the robot's webhook URL,
`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY` (消息推送配置说明 / 群机器人配置说明); that URL
is accepted and reduced to its key, so that only the key is stored and the sender alone decides which host
it posts to: no stored address can point anywhere (no SSRF). Anything else that is not a plausible key is
refused with a one-line BadInput.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from content.errors import BadInput

# Source: 消息推送配置说明 (WeCom developer centre, formerly 群机器人配置说明),
# https://developer.work.weixin.qq.com/document/path/99110 (formerly .../path/91770): "假设webhook是：
# https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa".
OFFICIAL_HOST = "qyapi.weixin.qq.com"
SEND_PATH = "/cgi-bin/webhook/send"
# The document gives no grammar for the key. Its example and real keys are UUIDs (36 characters: hex
# digits and hyphens; the example's "xxx" and "sifa" are redactions), so letters, digits and inner hyphens
# of a bounded length are taken: nothing that could change a URL's meaning ("/", "%", "&", "=", "#", "?",
# "@", ".", spaces, control characters or non-ASCII).
KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{6,62})[A-Za-z0-9]")
# The longest input worth parsing: the official URL (55 characters before the key) and a 64-character key,
# with room to spare; a 10,000-character paste is refused before any parsing.
MAX_ADDRESS_CHARS = 256


def parse_address(text: object) -> str:
    """The robot key in `text` (a bare key or the official webhook URL); BadInput otherwise."""
    if not isinstance(text, str) or not text:
        raise BadInput("wecom: empty address; expected a group robot's key or its webhook URL")
    if len(text) > MAX_ADDRESS_CHARS:
        raise BadInput(f"wecom: address longer than {MAX_ADDRESS_CHARS} characters")
    if not text.isascii() or not text.isprintable() or any(char.isspace() for char in text):
        raise BadInput("wecom: the address may hold only visible ASCII characters (no spaces)")
    if KEY.fullmatch(text):
        return text
    if "/" not in text and ":" not in text and "?" not in text:
        raise BadInput("wecom: not a robot key (8-64 letters, digits or inner '-')")
    return _key_of_url(text)


def _key_of_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise BadInput("wecom: not a webhook URL") from None
    if parts.scheme.lower() != "https":
        raise BadInput(f"wecom: the webhook URL must start with https://{OFFICIAL_HOST}{SEND_PATH}?key=")
    # netloc compared whole: no userinfo ("qyapi.weixin.qq.com@evil"), no port, no trailing dot, and a host
    # that only starts with the official one ("qyapi.weixin.qq.com.evil.com") is another host.
    if parts.netloc.lower() != OFFICIAL_HOST or port is not None:
        raise BadInput(f"wecom: the webhook URL must be on {OFFICIAL_HOST}")
    # The path compared whole: no "..", no "//", no trailing "/", no percent-encoding.
    if parts.path != SEND_PATH:
        raise BadInput(f"wecom: the webhook URL's path must be {SEND_PATH}")
    if parts.fragment or "#" in text:
        raise BadInput("wecom: the webhook URL must have no fragment")
    # Exactly one parameter, the key, as the official URL has: no second key, no other parameter, no
    # encoded characters that a server might decode into something else.
    name, separator, key = parts.query.partition("=")
    if name != "key" or not separator or not KEY.fullmatch(key):
        raise BadInput("wecom: the webhook URL must end in ?key= and the robot's key, with nothing else")
    return key


def check_key(key: object) -> str:
    """`key` itself when it is a bare robot key (what `parse_address` returns); BadInput otherwise."""
    if not isinstance(key, str) or len(key) > MAX_ADDRESS_CHARS or not KEY.fullmatch(key):
        raise BadInput("wecom: not a robot key")
    return key
