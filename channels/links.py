"""Link rewriting, one pass per (issue, channel): every link a payload shows goes through `LinkRewriter`.

- Relative links to other issues (`../embedded-ai-report/2020-06-17.md`) become that issue's page on
  the public URL (`{public_url}/issues/2020-06-17`); other relative links cannot be made absolute
  without guessing and are dropped, as are empty links and any scheme but http(s) and mailto.
- UTM parameters are added when the policy asks for them.
- Click tracking, when on and a public URL is set, replaces a link by `{public_url}/r/{token}`. The token
  is an HMAC of (channel, issue, url) with the secret key: deterministic, so rendering stays a pure
  function, and unguessable, so nobody can mint a redirect. The caller stores the token -> URL pairs
  listed in `links`; the redirect route answers only tokens it has stored (no open redirect).
- Per-reader clicks (JIANBAO_TRACK_SUBSCRIBERS), on a channel that personalises each delivery (email):
  the tracking links are marked `per_reader`, and that channel's renderer gives them a query the
  personalisation fills in with the reader's signed id (channels/email/render.py). The token stays the
  same for every reader: the page is rendered once, and the link table holds one row per link.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_ISSUE_REFERENCE = re.compile(r"(?:^|/)(\d{4}-\d{2}-\d{2})\.md(?:#.*)?$")
_ALLOWED_SCHEMES = ("http", "https", "mailto")
TOKEN_LENGTH = 16  # base32 characters: 80 bits


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """How one channel's links are rewritten; built from settings by the caller."""

    channel: str
    public_url: str | None = None  # e.g. https://jianbao.example.com, without a trailing slash
    tracking: bool = False
    utm: bool = False
    secret: bytes | None = None  # signs tracking tokens; required when tracking is on
    readers: bool = False  # tracking links may carry each reader's id (see the module's docstring)

    def __post_init__(self) -> None:
        if self.tracking and self.public_url and not self.secret:
            raise ValueError("click tracking needs a secret key to sign its tokens")
        if self.public_url is not None and self.public_url.endswith("/"):
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    @property
    def tracks(self) -> bool:
        return self.tracking and bool(self.public_url)


@dataclass(frozen=True, slots=True)
class RewrittenLink:
    original: str
    rendered: str
    token: str | None = None  # the tracking token, when `rendered` is a tracking link
    per_reader: bool = False  # a tracking link the channel's personalisation may give the reader's id

    def to_dict(self) -> dict[str, str | None]:
        return {"original": self.original, "rendered": self.rendered, "token": self.token}


@dataclass
class LinkRewriter:
    policy: LinkPolicy
    issue_date: dt.date
    _seen: dict[str, RewrittenLink | None] = field(default_factory=dict)

    def issue_page(self, date: dt.date | None = None) -> str | None:
        """The public page of an issue (this one by default), or None without a public URL."""
        if not self.policy.public_url:
            return None
        return f"{self.policy.public_url}/issues/{(date or self.issue_date).isoformat()}"

    def rewrite(self, url: str | None) -> str | None:
        """The URL to show for `url`, or None when the link must be dropped."""
        if url is None or not url.strip():
            return None
        url = url.strip()
        if url not in self._seen:
            self._seen[url] = self._rewrite(url)
        link = self._seen[url]
        return link.rendered if link else None

    @property
    def links(self) -> tuple[RewrittenLink, ...]:
        """Every link rewritten so far, in first-use order (dropped ones left out)."""
        return tuple(link for link in self._seen.values() if link is not None)

    def _rewrite(self, url: str) -> RewrittenLink | None:
        absolute = self._absolute(url)
        if absolute is None:
            return None
        if absolute.startswith("mailto:"):
            return RewrittenLink(url, absolute)
        if self.policy.utm:
            absolute = _with_utm(absolute, self.policy.channel, self.issue_date)
        if self.policy.tracks and not (self.policy.channel == "wechat" and is_wechat_article(absolute)):
            # Inside WeChat an article link must stay an mp.weixin.qq.com link to remain a link at all.
            token = tracking_token(self.policy.secret or b"", self.policy.channel, self.issue_date, absolute)
            rendered = f"{self.policy.public_url}/r/{token}"
            return RewrittenLink(absolute, rendered, token, per_reader=self.policy.readers)
        return RewrittenLink(url, absolute)

    def _absolute(self, url: str) -> str | None:
        scheme = urlsplit(url).scheme.lower()
        if scheme:
            return url if scheme in _ALLOWED_SCHEMES else None
        if url.startswith("//"):
            return f"https:{url}"
        reference = _ISSUE_REFERENCE.search(url)
        if reference:
            try:
                return self.issue_page(dt.date.fromisoformat(reference.group(1)))
            except ValueError:
                return None
        return None


def tracking_token(secret: bytes, channel: str, issue_date: dt.date, url: str) -> str:
    digest = hmac.new(secret, f"{channel}\n{issue_date.isoformat()}\n{url}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def _with_utm(url: str, channel: str, issue_date: dt.date) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname == "mp.weixin.qq.com":
        return url  # WeChat article URLs carry signatures that re-encoding their query would break
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.startswith("utm_")
    ]
    query += [("utm_source", "jianbao"), ("utm_medium", channel), ("utm_campaign", issue_date.isoformat())]
    return urlunsplit(parts._replace(query=urlencode(query)))


def is_wechat_article(url: str) -> bool:
    """Links that survive in a WeChat article body: articles on mp.weixin.qq.com."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname == "mp.weixin.qq.com"
