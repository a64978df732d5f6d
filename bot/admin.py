"""The editors' API under /api: every route needs `Authorization: Bearer <JIANBAO_ADMIN_TOKEN>`.

The token is checked before anything else, in constant time; with no token configured the admin API
does not exist (404), so an empty setting can never mean "open". The broadcast routes join here.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.app import SERVICES
from content.errors import JianbaoError
from storage.subscribers import SubscriberStatus


class Unauthorized(JianbaoError):
    status = 401
    kind = "unauthorized"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    app.router.add_get("/api/status", status)


def require_admin(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        expected = request.app[SERVICES].settings.admin_token
        if not expected:
            raise web.HTTPNotFound()
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise Unauthorized("admin token missing or wrong (Authorization: Bearer ...)")
        return await handler(request)

    return checked


@require_admin
async def status(request: web.Request) -> web.StreamResponse:
    """Counts an editor checks before a broadcast: issues, and subscribers per channel and status."""
    services = request.app[SERVICES]
    subscribers = {
        channel: {
            state.value: await services.subscribers.count(channel=channel, status=state)
            for state in SubscriberStatus
        }
        for channel in ("wechat", "telegram", "email")
    }
    return web.json_response(
        {
            "issues": await services.storage.issues.count(),
            "items": services.search.size,
            "subscribers": subscribers,
            "channels": {name: reason or "on" for name, reason in services.channel_status.items()},
        }
    )
