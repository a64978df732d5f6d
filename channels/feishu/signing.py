"""The custom bot's request signature (自定义机器人使用指南, "方式三：设置签名校验").

The guide: take `timestamp + "\\n" + 密钥` as the string to sign, compute HmacSHA256 "of the empty
string" with it, and Base64-encode the result; `timestamp` is Unix seconds within one hour (3600 s) of the
current time. Its Java, Go and Python samples all use the string to sign as the HMAC *key* and an empty
message, which is what `sign` does. The request body then carries "timestamp" (a string of the seconds)
and "sign" beside msg_type and content.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# 自定义机器人使用指南: "timestamp是指距当前时间不超过 1 小时（3600 秒）的时间戳，时间单位：s".
TIMESTAMP_TOLERANCE_SECONDS = 3600


def sign(secret: str, timestamp: int | str) -> str:
    """base64(HMAC-SHA256(key = f"{timestamp}\\n{secret}", message = b""))."""
    seconds = str(timestamp)
    if not seconds.isdigit() or not seconds.isascii():
        raise ValueError("the timestamp must be whole Unix seconds")
    key = f"{seconds}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def signature_fields(secret: str, timestamp: int) -> dict[str, str]:
    """The two fields a signed request adds to the body, as the guide's example writes them."""
    return {"timestamp": str(timestamp), "sign": sign(secret, timestamp)}
