"""What every HTTP exchange of the service gets, whatever the route: security headers on the way out, and
a deadline for the request body on the way in.

Headers (OWASP Secure Headers Project; MDN for each header):
- every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin` (our URLs can hold
  tokens: other sites never see them), and a `Server` header without versions (aiohttp's names itself
  and Python with their versions, which only helps an attacker pick an exploit);
- HTML pages: a strict Content-Security-Policy (no scripts at all, styles from our own /static only,
  forms post only to us, `frame-ancestors 'none'` against clickjacking) and `X-Frame-Options: DENY` for
  browsers that predate frame-ancestors;
- the editors' console (/console and below) is the one place with scripts: htmx from our own /static
  and its requests back to us, never inline code; and frames from us alone, for the previews it shows.
  A preview served to such a frame sets IFRAME_CONTENT_SECURITY_POLICY (and `X-Frame-Options:
  SAMEORIGIN`) itself: headers a handler set are never replaced here;
- a route whose URL holds a token (`/confirm/{token}`, `/unsubscribe/{token}`, `/r/{token}`):
  `Cache-Control: no-store`, so neither a shared cache nor the browser's history keeps the page.

The client: behind a reverse proxy every request comes from the proxy, so per-client limits (sign-up
caps, the admin throttle) would be one limit for everybody. With JIANBAO_TRUSTED_PROXIES set, a request
whose peer is one of them is taken to come from the address X-Forwarded-For names: read from the right,
the first address that is not a trusted proxy (the ones to its left were written by the client itself,
and may be anything). A peer that is not trusted is the client, whatever its headers say.

The body deadline: aiohttp times out nothing while a body trickles in, so a client sending one byte every
five seconds held a handler (and its memory) forever. A request whose body has not fully arrived within
BODY_DEADLINE_SECONDS of its headers gets 408 and its connection is closed. The body is not read here:
handlers still check signatures and secrets before they read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from bot.errors import route_template

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVER_NAME = "jianbao"
# Our pages use no scripts; styles come from /static; images only from https (item pictures, if any).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The console's pages: the same, plus htmx (a file under /static, never inline: no 'unsafe-inline', no
# 'unsafe-eval') and its requests to us (connect-src), and frames from us for the email and WeChat
# previews. Nobody may frame the console itself.
CONSOLE_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self' https: data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
CONSOLE_PATH = "/console"
# A preview (an email's HTML, a WeChat article) in the console's frames: markup styled inline, so inline
# styles only; `sandbox` with no allowances (no scripts, no forms, no popups, an opaque origin that reads
# none of our cookies); pictures from https; only our own console may frame it.
IFRAME_CONTENT_SECURITY_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'"
)
# Webhook and form bodies are at most 1 MiB (bot/app.py MAX_BODY_BYTES): even a slow phone link sends
# that in a few seconds. Long enough for any honest client, short enough that trickling costs us little.
BODY_DEADLINE_SECONDS = 20.0
# The deadline under a key of its own, so that a test can shorten it before the app starts.
BODY_DEADLINE = web.AppKey("body_deadline_seconds", float)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])


def setup(app: web.Application, trusted_proxies: str = "") -> None:
    app.setdefault(BODY_DEADLINE, BODY_DEADLINE_SECONDS)
    app[TRUSTED_PROXIES] = parse_networks(trusted_proxies)
    if app[TRUSTED_PROXIES]:
        app.middlewares.insert(0, forwarded_client)
    app.middlewares.append(body_deadline)
    app.on_response_prepare.append(_security_headers)


def parse_networks(text: str) -> tuple[Network, ...]:
    """ "127.0.0.1, 10.0.0.0/8" as networks; ValueError naming the setting for anything else."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"JIANBAO_TRUSTED_PROXIES: {part.strip()[:60]!r} is not an address"
                ) from None
    return tuple(networks)


@web.middleware
async def forwarded_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    proxies = request.app[TRUSTED_PROXIES]
    if not _trusted(request.remote, proxies):
        return await handler(request)
    hops = [
        hop.strip() for value in request.headers.getall("X-Forwarded-For", []) for hop in value.split(",")
    ]
    client = _client_of(hops, proxies)
    return await handler(request.clone(remote=client) if client else request)


def _client_of(hops: Sequence[str], proxies: Sequence[Network]) -> str | None:
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return None  # a hop we cannot read: believe nothing of the header
        if not any(address in network for network in proxies):
            return str(address)
    return None


def _trusted(peer: str | None, proxies: Sequence[Network]) -> bool:
    try:
        return peer is not None and any(ipaddress.ip_address(peer) in network for network in proxies)
    except ValueError:  # a Unix socket's peer has no address
        return False


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    # is_eof: the whole body has arrived (read or not); at_eof would also need it read.
    if not request.body_exists or request.content.is_eof():
        return await handler(request)
    handling = asyncio.ensure_future(handler(request))
    arrived = asyncio.ensure_future(request.content.wait_eof())
    try:
        await asyncio.wait(
            {handling, arrived},
            timeout=request.app[BODY_DEADLINE],
            return_when=asyncio.FIRST_COMPLETED,
        )
    except asyncio.CancelledError:
        handling.cancel()
        raise
    finally:
        arrived.cancel()
    if handling.done() or request.content.is_eof():
        return await handling  # answered, or the whole body is here: no deadline from now on
    handling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await handling
    response = web.Response(status=408, text="the request body did not arrive in time\n")
    response.force_close()
    return response


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Server"] = SERVER_NAME
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        # setdefault: a handler's own policy (a framed preview's) wins over both.
        policy = CONSOLE_CONTENT_SECURITY_POLICY if _in_console(request) else CONTENT_SECURITY_POLICY
        headers.setdefault("Content-Security-Policy", policy)
        headers.setdefault("X-Frame-Options", "DENY")
    if _holds_token(request):
        headers["Cache-Control"] = "no-store"


def _in_console(request: web.Request) -> bool:
    # Not a bare prefix: /consolefoo is not the console.
    return request.path == CONSOLE_PATH or request.path.startswith(CONSOLE_PATH + "/")


def _holds_token(request: web.Request) -> bool:
    return "{token}" in route_template(request)
