"""Feishu addresses: a hook token, or the official webhook URL reduced to it; everything else refused with
a one-line BadInput that does not repeat the input. And the signing secret's loose shape."""

from __future__ import annotations

import pytest

from channels.feishu import check_secret, check_token, hook_path, parse_address
from content.errors import BadInput

TOKEN = "5e3d587e-d78e-4a07-bd07-265f269f86fd"
OFFICIAL = f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}"


@pytest.mark.parametrize(
    "address",
    [
        TOKEN,
        OFFICIAL,
        f"https://OPEN.Feishu.CN/open-apis/bot/v2/hook/{TOKEN}",  # host names are case-insensitive
        f"HTTPS://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",
    ],
)
def test_a_token_or_the_official_url_gives_the_token(address: str) -> None:
    assert parse_address(address) == TOKEN


@pytest.mark.parametrize(
    "token",
    [
        "0123456789abcdef0123456789abcdef",  # 32 hexadecimal digits, the older form
        "abcdefgh",  # the shortest accepted
        "a" * 128,  # the longest accepted
        "A_b-9" * 4,
    ],
)
def test_plausible_token_shapes_are_accepted(token: str) -> None:
    assert parse_address(token) == token
    assert parse_address(f"https://open.feishu.cn/open-apis/bot/v2/hook/{token}") == token
    assert check_token(token) == token


HOSTILE = {
    "lookalike host": f"https://open.feishu.cn.evil.com/open-apis/bot/v2/hook/{TOKEN}",
    "other host": f"https://evil.example/open-apis/bot/v2/hook/{TOKEN}",
    "lark host": f"https://open.larksuite.com/open-apis/bot/v2/hook/{TOKEN}",
    "userinfo to another host": f"https://open.feishu.cn@evil.example/open-apis/bot/v2/hook/{TOKEN}",
    "userinfo on the host": f"https://user:pw@open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",
    "backslash userinfo": f"https://open.feishu.cn\\@evil.example/open-apis/bot/v2/hook/{TOKEN}",
    "plain http": f"http://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",
    "a port": f"https://open.feishu.cn:8443/open-apis/bot/v2/hook/{TOKEN}",
    "a bad port": f"https://open.feishu.cn:99999/open-apis/bot/v2/hook/{TOKEN}",
    "trailing dot": f"https://open.feishu.cn./open-apis/bot/v2/hook/{TOKEN}",
    "scheme-relative": f"//open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",
    "other version": f"https://open.feishu.cn/open-apis/bot/v1/hook/{TOKEN}",
    "other API": "https://open.feishu.cn/open-apis/im/v1/messages",
    "no token": "https://open.feishu.cn/open-apis/bot/v2/hook/",
    "traversal after": f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}/../../../im/v1/messages",
    "traversal before": f"https://open.feishu.cn/open-apis/bot/v2/hook/../hook/{TOKEN}",
    "encoded traversal": f"https://open.feishu.cn/open-apis/bot/v2/hook/%2e%2e%2f{TOKEN}",
    "extra segment": f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}/x",
    "query": f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}?next=https://evil.example",
    "empty query": f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}?",
    "fragment": f"https://open.feishu.cn/open-apis/bot/v2/hook/{TOKEN}#x",
    "bare traversal": "../../etc/passwd",
    "bare host": "open.feishu.cn.evil.com",
    "javascript": "javascript:alert(1)",
    "empty": "",
    "too short": "abc1234",
    "too long token": "a" * 129,
    "too long address": f"https://open.feishu.cn/open-apis/bot/v2/hook/{'a' * 300}",
    "NUL": f"{TOKEN}\x00",
    "NUL in URL": f"https://open.feishu.cn\x00.evil.example/open-apis/bot/v2/hook/{TOKEN}",
    "trailing space": f"{TOKEN} ",
    "leading space": f" {TOKEN}",
    "inner space": "5e3d587e d78e",
    "newline header": f"{OFFICIAL}\r\nHost: evil.example",
    "tab": f"\t{TOKEN}",
    "emoji": "😀" * 10,
    "emoji in token": f"{TOKEN}😀",
    "fullwidth host": f"https://ｏpen.feishu.cn/open-apis/bot/v2/hook/{TOKEN}",
    "dot token": "abcdefgh.ijk",
    "percent token": "abcdefgh%20ijk",
    "leading dash": "-abcdefghij",
}


@pytest.mark.parametrize("address", list(HOSTILE.values()), ids=list(HOSTILE))
def test_anything_else_is_refused_in_one_line(address: str) -> None:
    with pytest.raises(BadInput) as raised:
        parse_address(address)
    message = str(raised.value)
    assert message.startswith("feishu: ")
    assert "\n" not in message
    assert len(message) < 200
    assert TOKEN not in message  # never echoed: an address is a credential


def test_a_non_string_is_refused() -> None:
    with pytest.raises(BadInput):
        parse_address(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", [OFFICIAL, "../x/abcdefgh", "abcdefgh?x", ""])
def test_hook_path_takes_bare_tokens_only(token: str) -> None:
    with pytest.raises(BadInput):
        hook_path(token)


def test_hook_path_is_the_official_path() -> None:
    assert hook_path(TOKEN) == f"/open-apis/bot/v2/hook/{TOKEN}"


@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret(secret: str | None) -> None:
    assert check_secret(secret) is None


@pytest.mark.parametrize("secret", ["nIMtb7r3N9pkXyXdtAbx6e", "demo-secret", "a+b/c=d_e-f!g~", "x" * 128])
def test_secret_shapes_accepted(secret: str) -> None:
    assert check_secret(secret) == secret


@pytest.mark.parametrize(
    "secret", ["demo", "x" * 129, "has space x", "tab\tsecret", "nul\x00secret", "密钥密钥密钥密钥", "😀" * 8]
)
def test_secret_shapes_refused(secret: str) -> None:
    with pytest.raises(BadInput) as raised:
        check_secret(secret)
    assert secret not in str(raised.value)
    assert "\n" not in str(raised.value)
