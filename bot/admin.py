"""The editors' API under /api: every route needs `Authorization: Bearer <JIANBAO_ADMIN_TOKEN>`.

The token is checked before anything else, in constant time; with no token configured the admin API
does not exist (404), so an empty setting can never mean "open". A configured token shorter than
ADMIN_TOKEN_MIN_CHARS stops the service at start. A client (by address) that fails the check
ADMIN_FAILURES_PER_CLIENT times within a minute is answered 429 with Retry-After, token unchecked, until
the minute has passed: guessing goes at ten tries a minute instead of thousands a second. The broadcast
routes join here.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.openapi import OPENAPI_PATH, openapi_document
from bot.services import SERVICES
from bot.settings import Settings
from bot.throttle import WindowCounter
from content.errors import JianbaoError, TooManyRequests
from storage.subscribers import SubscriberStatus


class Unauthorized(JianbaoError):
    status = 401
    kind = "unauthorized"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# 32 random characters are out of reach of guessing at any rate; shorter ones are refused at start.
ADMIN_TOKEN_MIN_CHARS = 32
ADMIN_FAILURES_PER_CLIENT = 10
ADMIN_FAILURE_WINDOW_SECONDS = 60.0
ADMIN_FAILURES = web.AppKey("admin_failures", WindowCounter)


def check_admin_token(settings: Settings) -> None:
    """ValueError, for the operator at start, when the configured admin token is too short to be safe."""
    token = settings.admin_token
    if token and len(token.strip()) < ADMIN_TOKEN_MIN_CHARS:
        raise ValueError(
            f"JIANBAO_ADMIN_TOKEN has {len(token.strip())} characters; it needs at least "
            f"{ADMIN_TOKEN_MIN_CHARS} (try `openssl rand -hex 32`)"
        )


def setup(app: web.Application) -> None:
    app[ADMIN_FAILURES] = WindowCounter(ADMIN_FAILURES_PER_CLIENT, ADMIN_FAILURE_WINDOW_SECONDS)
    app.router.add_get("/api/status", status)
    app.router.add_get(OPENAPI_PATH, require_admin(openapi_document))


def require_admin(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        expected = request.app[SERVICES].settings.admin_token
        if not expected:
            raise web.HTTPNotFound()
        failures, client = request.app[ADMIN_FAILURES], request.remote or ""
        wait = failures.retry_after(client)
        if wait:
            raise TooManyRequests("too many wrong admin tokens from this address: wait a minute", wait)
        if not _token_matches(request.headers.get("Authorization", ""), expected):
            failures.add(client)
            raise Unauthorized("admin token missing or wrong (Authorization: Bearer ...)")
        return await handler(request)

    return checked


def _token_matches(header: str, expected: str) -> bool:
    scheme, _, token = header.partition(" ")
    # Header values arrive as str decoded with surrogateescape: bytes that are not UTF-8 come back as
    # they were (and then simply do not match) rather than raising.
    given = token.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(given, expected.encode())


@require_admin
async def status(request: web.Request) -> web.StreamResponse:
    """Counts an editor checks before a broadcast: issues, and subscribers per channel and status."""
    services = request.app[SERVICES]
    subscribers = {
        channel: {
            state.value: await services.subscribers.count(channel=channel, status=state)
            for state in SubscriberStatus
        }
        for channel in services.channels.names
    }
    return web.json_response(
        {
            "issues": await services.storage.issues.count(),
            "items": services.search.size,
            "subscribers": subscribers,
            "channels": {name: reason or "on" for name, reason in services.channel_status.items()},
            "sending": {name: reason or "on" for name, reason in services.sending_status.items()},
        }
    )
