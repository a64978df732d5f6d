"""Which fetches of a tracking link are not a reader clicking it: link previews and mail scanners.

A chat app that shows a link fetches it to draw the preview card; a mail provider or a company's mail
gateway fetches every link of a mail to check it before (or when) the reader opens it. Counted as clicks,
these make a link look read by everyone it was sent to. `classify` names them from the request alone, so
that /r/{token} can still redirect them (a preview must work) while the analytics count them apart.

What is matched is a case-insensitive substring of the User-Agent. Where the vendor documents its agent,
the comment says where; the others are user agents observed in access logs and shared lists, which vendors
change without notice: a fetch that slips through is counted, as it was before this filter.

Not matched on purpose: WeChat's in-app browser ("MicroMessenger") and QQ's ("QQ/"), which are readers
opening a link; WeChat and QQ do not document the agent of their preview fetchers, so those fall to the
generic tokens or are counted. Scanners that pose as a desktop browser cannot be told by their agent at
all; storage/clicks.py catches them by timing (soon after the mail went out, or every link of one mail
fetched within a second or two).
"""

from __future__ import annotations

from typing import Literal

ClickFilter = Literal["preview", "scanner"]

# Chat and social apps drawing a preview card.
PREVIEW_AGENTS = (
    # Telegram's preview fetcher sends "TelegramBot (like TwitterBot)": observed user agent (Telegram
    # documents previews, core.telegram.org/api/links, but not the agent).
    "telegrambot",
    # "WhatsApp/2.x": observed user agent.
    "whatsapp",
    # Meta: developers.facebook.com/docs/sharing/webmasters/web-crawlers ("facebookexternalhit/1.1",
    # "facebookcatalog/1.0", and "Facebot").
    "facebookexternalhit",
    "facebookcatalog",
    "facebot",
    # Slack: api.slack.com/robots ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)").
    "slackbot-linkexpanding",
    "slack-imgproxy",
    # "Discordbot/2.0": observed user agent.
    "discordbot",
    # X/Twitter cards: developer.x.com, "Cards troubleshooting" ("Twitterbot/1.0").
    "twitterbot",
    # LinkedIn: "Making your website shareable on LinkedIn" (learn.microsoft.com) names "LinkedInBot".
    "linkedinbot",
    # Skype and Teams' URL previews, "SkypeUriPreview Preview/0.5": observed user agent.
    "skypeuripreview",
    # Apple's iMessage/Messages previews pose as "facebookexternalhit ... Twitterbot" (matched above).
    # Line, Viber and KakaoTalk: observed user agents.
    "viber",
    "kakaotalk-scrap",
    "line-poker",
    # Any other agent that says it draws a preview.
    "preview",
)

# Mail providers and security gateways checking the links of a mail.
SCANNER_AGENTS = (
    # Microsoft Office apps probing a link before opening it ("Microsoft Office Existence Discovery",
    # "Microsoft Office Protocol Discovery", "ms-office"; Defender for Office 365 Safe Links detonates
    # links in such agents too): observed user agents.
    "microsoft office existence discovery",
    "microsoft office protocol discovery",
    "ms-office",
    "msoffice",
    # Gateways: observed user agents ("Barracuda Sentinel", Mimecast's and Proofpoint's URL defense).
    "barracuda",
    "mimecast",
    "proofpoint",
    # Mail providers' proxies fetching on the reader's behalf: Yahoo's "YahooMailProxy" and Gmail's
    # "GoogleImageProxy" (observed user agents).
    "yahoomailproxy",
    "googleimageproxy",
    # A browser driven by a program (sandboxes that detonate links): observed user agent.
    "headlesschrome",
)

# Whatever calls itself a robot: the convention of search engines' documented agents (Googlebot,
# bingbot, YandexBot, Baiduspider...) and of most monitors and crawlers.
ROBOT_TOKENS = ("bot", "crawler", "spider", "crawling", "slurp")
# Browsers whose agent holds a robot token all the same: the Android phones of the maker CUBOT
# ("... CUBOT X19 ..."), observed user agent.
NOT_ROBOTS = ("cubot",)


def classify(user_agent: str | None, method: str) -> ClickFilter | None:
    """ "preview" or "scanner" for a fetch that is not a reader's click, None for one that is.

    A HEAD is never a click (only link checkers and previews send it); here it is a "preview", for a
    caller that records it at all. An empty or missing User-Agent is a program: every browser sends one.
    """
    if method.upper() == "HEAD":
        return "preview"
    agent = (user_agent or "").strip().lower()
    if not agent:
        return "scanner"
    if any(token in agent for token in PREVIEW_AGENTS):
        return "preview"
    if any(token in agent for token in SCANNER_AGENTS):
        return "scanner"
    for browser in NOT_ROBOTS:
        agent = agent.replace(browser, "")
    if any(token in agent for token in ROBOT_TOKENS):
        return "scanner"
    return None
