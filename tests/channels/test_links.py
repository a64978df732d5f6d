"""Link rewriting: absolute issue pages, tracking tokens that only we can mint, UTM, dropped links."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.links import LinkPolicy, LinkRewriter, is_wechat_article, tracking_token

DAY = dt.date(2020, 7, 2)


def rewriter(**policy: object) -> LinkRewriter:
    return LinkRewriter(LinkPolicy(channel="telegram", **policy), DAY)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("../embedded-ai-report/2020-06-17.md", "https://jb.example/issues/2020-06-17"),
        ("2020-06-17.md", "https://jb.example/issues/2020-06-17"),
        ("https://github.com/ysh329/awesome-embedded-ai/blob/master/embedded-ai-report/2019-05-15.md", None),
        ("https://arxiv.org/abs/2006.16669", "https://arxiv.org/abs/2006.16669"),
        ("//cdn.example/x", "https://cdn.example/x"),
        ("mailto:editor@example.com", "mailto:editor@example.com"),
        ("", None),
        ("   ", None),
        (None, None),
        ("javascript:alert(1)", None),
        ("data:text/html,<script>", None),
        ("../wechat_qrcode.jpg", None),
        ("../embedded-ai-report/2020-13-45.md", None),
    ],
)
def test_rewrite(url: str | None, expected: str | None) -> None:
    result = rewriter(public_url="https://jb.example/").rewrite(url)
    if url and url.startswith("https://github.com"):
        expected = url  # an absolute link to a file on GitHub stays as written
    assert result == expected


def test_without_public_url_relative_issue_links_are_dropped() -> None:
    links = rewriter()
    assert links.rewrite("../embedded-ai-report/2020-06-17.md") is None
    assert links.issue_page() is None
    assert links.rewrite("https://a.example/") == "https://a.example/"


def test_tracking_links_are_signed_and_listed() -> None:
    links = rewriter(public_url="https://jb.example", tracking=True, secret=b"s3cret")
    first = links.rewrite("https://arxiv.org/abs/2006.16669")
    again = links.rewrite("https://arxiv.org/abs/2006.16669")
    other = links.rewrite("https://github.com/Tencent/ncnn")
    assert first == again != other
    assert first is not None
    assert first.startswith("https://jb.example/r/")
    token = first.rsplit("/", 1)[1]
    assert token == tracking_token(b"s3cret", "telegram", DAY, "https://arxiv.org/abs/2006.16669")
    assert token != tracking_token(b"other-key", "telegram", DAY, "https://arxiv.org/abs/2006.16669")
    assert token != tracking_token(b"s3cret", "email", DAY, "https://arxiv.org/abs/2006.16669")
    assert [(link.original, link.token) for link in links.links] == [
        ("https://arxiv.org/abs/2006.16669", token),
        ("https://github.com/Tencent/ncnn", other.rsplit("/", 1)[1] if other else None),
    ]


def test_tracking_is_off_without_a_public_url_and_needs_a_secret() -> None:
    assert rewriter(tracking=True).rewrite("https://a.example/") == "https://a.example/"
    with pytest.raises(ValueError, match="secret"):
        LinkPolicy(channel="email", public_url="https://jb.example", tracking=True)


def test_utm_parameters_replace_existing_ones_and_spare_wechat_articles() -> None:
    links = rewriter(utm=True)
    assert links.rewrite("https://a.example/p?x=1&utm_source=old") == (
        "https://a.example/p?x=1&utm_source=jianbao&utm_medium=telegram&utm_campaign=2020-07-02"
    )
    signed = "https://mp.weixin.qq.com/s?timestamp=1&signature=a*b="
    assert links.rewrite(signed) == signed


def test_wechat_article_test() -> None:
    assert is_wechat_article("https://mp.weixin.qq.com/s/abc")
    assert not is_wechat_article("https://mp.weixin.qq.com.evil.example/s/abc")
    assert not is_wechat_article("javascript:mp.weixin.qq.com")
