"""The custom bot's signature (自定义机器人使用指南, "方式三：设置签名校验").

The guide's samples compute the signature of secret "demo" at timestamp 1599360473 and show the result
only in a screenshot; the value below is that computation (HMAC-SHA256 keyed with "1599360473\\ndemo" over
an empty message, Base64), the same value two unrelated public projects assert for these inputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from channels.feishu import TIMESTAMP_TOLERANCE_SECONDS, sign, signature_fields

GUIDE_SECRET = "demo"
GUIDE_TIMESTAMP = 1599360473
GUIDE_SIGN = "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="


def test_the_guides_example() -> None:
    assert sign(GUIDE_SECRET, GUIDE_TIMESTAMP) == GUIDE_SIGN
    assert sign(GUIDE_SECRET, str(GUIDE_TIMESTAMP)) == GUIDE_SIGN


def test_the_key_is_timestamp_newline_secret_and_the_message_is_empty() -> None:
    secret, timestamp = "nIMtb7r3N9pkXyXdtAbx6e", 1700000000
    key = f"{timestamp}\n{secret}".encode()
    assert sign(secret, timestamp) == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    # Not the other common scheme (DingTalk's: the secret as key, the string as message).
    swapped = hmac.new(secret.encode(), key, hashlib.sha256).digest()
    assert sign(secret, timestamp) != base64.b64encode(swapped).decode()


def test_signature_fields_are_strings_as_in_the_guides_example() -> None:
    assert signature_fields(GUIDE_SECRET, GUIDE_TIMESTAMP) == {
        "timestamp": "1599360473",
        "sign": GUIDE_SIGN,
    }


def test_a_different_secret_or_second_changes_the_signature() -> None:
    assert sign("demo2", GUIDE_TIMESTAMP) != GUIDE_SIGN
    assert sign(GUIDE_SECRET, GUIDE_TIMESTAMP + 1) != GUIDE_SIGN


@pytest.mark.parametrize("timestamp", ["-1", "1.5", "", "１２３", "12 3"])
def test_a_timestamp_must_be_whole_seconds(timestamp: str) -> None:
    with pytest.raises(ValueError, match="Unix seconds"):
        sign(GUIDE_SECRET, timestamp)


def test_the_documented_tolerance_is_an_hour() -> None:
    assert TIMESTAMP_TOLERANCE_SECONDS == 3600
