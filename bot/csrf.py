"""Cross-site request forgery protection for the forms of our own pages: the double-submit pattern.

The page with a form sets a cookie holding a random value and puts, in a hidden field, an HMAC of that
value under a key derived from SECRET_KEY for this use alone. A POST is taken only when the two match:

- another site cannot read our page, so cannot learn the field; and the cookie is SameSite=Strict, so a
  form posted from another site arrives without it anyway;
- a pair fetched by a script is valid, but only for that script's own requests: this stops other
  people's browsers being made to post, not scripts (the sign-up caps are for those);
- over https the cookie is `__Host-` prefixed (Secure, Path=/, no Domain), so a sibling subdomain
  cannot plant a value of its own choosing (the HMAC alone would not stop a planted pair).

Besides, a POST whose Origin header names another origin is refused outright.

    guard = FormGuard(settings.secret_key, settings.public_url)
    token = guard.offer(request)            # the page: token.field into the form, then
    token.set_cookie(response)
    guard.check(request, form)              # the POST: CsrfRefused (403) unless the pair matches
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from content.errors import JianbaoError

FIELD = "csrf_token"
_COOKIE = "jianbao_csrf"
_KEY_PURPOSE = b"jianbao form csrf v1"
_VALUE_BYTES = 32
# secrets.token_urlsafe(32) and the base64url of a SHA-256 HMAC are both 43 characters.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CsrfRefused(JianbaoError):
    status = 403
    kind = "csrf"


@dataclass(frozen=True, slots=True)
class FormToken:
    """What one page hands out: the cookie and the hidden field that goes with it."""

    cookie_name: str
    cookie_value: str
    field: str
    secure: bool

    def set_cookie(self, response: web.StreamResponse) -> None:
        response.set_cookie(
            self.cookie_name,
            self.cookie_value,
            path="/",
            secure=self.secure or None,
            httponly=True,
            samesite="Strict",
        )
        # A shared cache must not hand one visitor's cookie and field to everyone.
        response.headers["Cache-Control"] = "private"


class FormGuard:
    """One per app (FORM_GUARD): its key is derived once, not on every page view."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        if not secret_key:
            raise ValueError("form tokens need a secret key")
        self._key = hmac.new(secret_key.encode(), _KEY_PURPOSE, hashlib.sha256).digest()
        parts = urlsplit(public_url)
        self._secure = parts.scheme.lower() == "https"
        self._origin = _origin_of(public_url) if parts.scheme and parts.hostname else None
        self.cookie_name = f"__Host-{_COOKIE}" if self._secure else _COOKIE

    @property
    def secure(self) -> bool:
        """Whether the app is served over https (PUBLIC_URL): its cookies are then Secure."""
        return self._secure

    def offer(self, request: web.Request) -> FormToken:
        """The token for a page with a form: the visitor's cookie when it has a sound one (their other
        tabs keep working), else a new random value."""
        value = request.cookies.get(self.cookie_name, "")
        if not _TOKEN.fullmatch(value):
            value = secrets.token_urlsafe(_VALUE_BYTES)
        return FormToken(self.cookie_name, value, self._field(value), self._secure)

    def check(self, request: web.Request, form: Mapping[str, object]) -> None:
        """CsrfRefused unless the request comes from our origin with a matching cookie and field."""
        self.check_origin(request)
        value = request.cookies.get(self.cookie_name, "")
        field = form.get(FIELD)
        if not _TOKEN.fullmatch(value) or not isinstance(field, str):
            raise CsrfRefused("the form has expired or did not come from our page: reload it and try again")
        if not hmac.compare_digest(field.encode(), self._field(value).encode()):
            raise CsrfRefused("the form has expired or did not come from our page: reload it and try again")

    def check_origin(self, request: web.Request) -> None:
        """CsrfRefused when the browser says the request comes from another origin (or an opaque one,
        "null"); without an Origin header there is nothing to go by here."""
        origin = request.headers.get("Origin")
        if origin is None:
            return
        if self._origin is not None:
            ours = _origin_of(origin) == self._origin
        else:  # no PUBLIC_URL: the host the client asked for is ours
            ours = _netloc_of(origin) == _without_default_port(request.host.lower())
        if not ours:
            raise CsrfRefused("forms are only accepted from this site's own pages")

    def _field(self, value: str) -> str:
        tag = hmac.new(self._key, value.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(tag).decode("ascii").rstrip("=")


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in; None for an unreadable one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _netloc_of(origin: str) -> str | None:
    found = _origin_of(origin)
    if found is None:
        return None
    scheme, host, port = found
    host = f"[{host}]" if ":" in host else host
    return host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"


def _without_default_port(host: str) -> str:
    for port in _DEFAULT_PORTS.values():
        host = host.removesuffix(f":{port}")
    return host


# The app's guard, shared by the pages that show forms and the routes that take them.
FORM_GUARD = web.AppKey("form_guard", FormGuard)
