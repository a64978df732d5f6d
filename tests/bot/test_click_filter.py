"""Which fetches of a tracking link are readers: real user agents of browsers, previews and scanners."""

from __future__ import annotations

import pytest

from bot.click_filter import classify

READERS = [
    # Chrome on Windows, Safari on iPhone, Firefox on Linux.
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    # WeChat's in-app browser: a reader opening the link from the article.
    "Mozilla/5.0 (Linux; Android 13; V2183A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5023 MMWEBSDK/20230405 MicroMessenger/8.0.35",
    # A phone whose maker's name holds "bot".
    "Mozilla/5.0 (Linux; Android 10; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/96.0 Mobile",
]

PREVIEWS = [
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0 A",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
]

SCANNERS = [
    "Microsoft Office Existence Discovery",
    "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "Barracuda Sentinel (EE)",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/119.0 Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0)",
    "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
    "SomeCrawler/0.1",
    "",
    "   ",
]


@pytest.mark.parametrize("agent", READERS)
def test_browsers_are_readers(agent: str) -> None:
    assert classify(agent, "GET") is None


@pytest.mark.parametrize("agent", PREVIEWS)
def test_link_previews(agent: str) -> None:
    assert classify(agent, "GET") == "preview"


@pytest.mark.parametrize("agent", SCANNERS)
def test_scanners_and_robots(agent: str) -> None:
    assert classify(agent, "GET") == "scanner"


def test_no_user_agent_is_a_program() -> None:
    assert classify(None, "GET") == "scanner"


@pytest.mark.parametrize("method", ["HEAD", "head"])
def test_a_head_is_never_a_click(method: str) -> None:
    assert classify(READERS[0], method) is not None
