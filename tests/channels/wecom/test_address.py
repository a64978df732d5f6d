"""A WeCom address is a robot key; the official webhook URL is reduced to it, anything else is refused."""

from __future__ import annotations

import pytest

from channels.wecom import check_key, parse_address
from content.errors import BadInput

KEY = "693a91f6-7a3c-4bc4-97a0-0ec2a1fa5aaa"
OFFICIAL = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"


@pytest.mark.parametrize(
    "address",
    [
        KEY,
        OFFICIAL,
        f"HTTPS://QYAPI.WEIXIN.QQ.COM/cgi-bin/webhook/send?key={KEY}",  # scheme and host are case-free
        "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa",  # the document's own (redacted) example
        "0123456789abcdef0123456789abcdef",  # 32 hex digits, no hyphens
    ],
)
def test_a_key_or_the_official_url_gives_the_key(address: str) -> None:
    key = parse_address(address)
    assert key in address
    assert check_key(key) == key
    assert "/" not in key
    assert ":" not in key


HOSTILE = {
    "empty": "",
    "other host": f"https://evil.example/cgi-bin/webhook/send?key={KEY}",
    "official host as a prefix": f"https://qyapi.weixin.qq.com.evil.com/cgi-bin/webhook/send?key={KEY}",
    "official host as a suffix": f"https://evilqyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "userinfo": f"https://qyapi.weixin.qq.com@evil.example/cgi-bin/webhook/send?key={KEY}",
    "userinfo before the host": f"https://evil.example@qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "port": f"https://qyapi.weixin.qq.com:8443/cgi-bin/webhook/send?key={KEY}",
    "trailing dot": f"https://qyapi.weixin.qq.com./cgi-bin/webhook/send?key={KEY}",
    "plain http": f"http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "no scheme": f"qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "protocol-relative": f"//qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "other scheme": f"ftp://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "other path": f"https://qyapi.weixin.qq.com/cgi-bin/message/send?key={KEY}",
    "path traversal": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/../../evil/send?key={KEY}",
    "encoded traversal": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/%2e%2e/send?key={KEY}",
    "double slash": f"https://qyapi.weixin.qq.com//cgi-bin/webhook/send?key={KEY}",
    "trailing slash": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send/?key={KEY}",
    "no key": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
    "empty key": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=",
    "two keys": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}&key=0f9c2b1a-7d4e-4c3b",
    "another parameter": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}&debug=1",
    "parameter first": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?a=1&key={KEY}",
    "encoded key": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=%36%39%33a91f6-7a3c",
    "key with a path": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}/../x",
    "fragment": f"{OFFICIAL}#x",
    "key holding a URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=https://evil.example",
    "semicolon parameter": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY};x=1",
    "10,000 characters": "a" * 10_000,
    "a long URL": OFFICIAL + "a" * 300,
    "key too long": "a" * 65,
    "key too short": "abc",
    "leading hyphen": "-" + KEY,
    "spaces": f" {KEY}",
    "trailing newline": f"{KEY}\n",
    "inner space": "693a91f6 7a3c-4bc4-97a0-0ec2a1fa5aaa",
    "tab in the URL": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=\t{KEY}",
    "NUL": f"{KEY}\x00",
    "NUL in the URL": f"https://qyapi.weixin.qq.com\x00.evil.example/cgi-bin/webhook/send?key={KEY}",
    "control character": f"{KEY}\x1b[31m",
    "emoji": f"{KEY}😀",
    "full-width host": f"https://ｑｙａｐｉ.weixin.qq.com/cgi-bin/webhook/send?key={KEY}",
    "non-ASCII key": "693a91f6-7a3c-4bc4-97a0-0ec2a1fa5aaé",
    "dots": "../../etc/passwd",
    "query only": f"?key={KEY}",
    "javascript": "javascript:alert(1)",
    "IPv6 host": f"https://[::1]/cgi-bin/webhook/send?key={KEY}",
}


@pytest.mark.parametrize("address", list(HOSTILE.values()), ids=list(HOSTILE))
def test_anything_else_is_refused_in_one_line(address: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse_address(address)
    message = refused.value.message
    assert message.startswith("wecom: ")
    assert "\n" not in message
    assert len(message) < 200
    assert KEY not in message, "the message never repeats the address"


@pytest.mark.parametrize("value", [None, 42, b"key", ["k"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(BadInput):
        parse_address(value)
    with pytest.raises(BadInput):
        check_key(value)


@pytest.mark.parametrize("key", [OFFICIAL, "a" * 10_000, f"{KEY}&x=1", f"{KEY}/..", ""])
def test_check_key_takes_only_bare_keys(key: str) -> None:
    with pytest.raises(BadInput, match="not a robot key"):
        check_key(key)
