"""The broadcast API for editors (admin token, bot/admin.py):

    POST /api/broadcasts                    {"date", "channels"?, "at"?, "wechat_text"?, "dry_run"?}
                                            201 with the broadcast (200 when it already existed)
    GET  /api/broadcasts/{id}               the broadcast with its counts, rate and ETA
    GET  /api/broadcasts/{id}/stats         its figures per channel, its links' clicks, unsubscribes
                                            (storage/broadcast_stats.py; shared per process while it runs)
    POST /api/broadcasts/{id}/pause|resume|cancel

The same operations as `jianbao broadcast`, through bot/broadcast/control.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.admin import require_admin
from bot.broadcast.control import BroadcastControl, DryRun, SendRequest, parse_date, parse_time
from bot.broadcast.runtime import open_worker, serve_runs_worker
from bot.broadcast.snapshots import StatsSnapshots
from bot.services import SERVICES
from content.errors import BadInput, NotFound
from storage.broadcast_stats import BroadcastStats

log = logging.getLogger(__name__)

# A broadcast request is a handful of fields.
MAX_REQUEST_BYTES = 16 * 1024
_FIELDS = {"date", "channels", "at", "wechat_text", "dry_run"}
STATS = web.AppKey("broadcast_stats", StatsSnapshots)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/broadcasts", create)
    app.router.add_get("/api/broadcasts/{id}", show)
    app.router.add_get("/api/broadcasts/{id}/stats", stats)
    for verb in ("pause", "resume", "cancel"):
        app.router.add_post(f"/api/broadcasts/{{id}}/{verb}", steer)
    app.cleanup_ctx.append(_stats_context)
    app.cleanup_ctx.append(_worker_context)


async def _stats_context(app: web.Application) -> AsyncIterator[None]:
    """The process's shared broadcast figures, closed before storage is."""
    app[STATS] = StatsSnapshots(BroadcastStats(app[SERVICES].storage.database))
    try:
        yield
    finally:
        await app[STATS].close()


async def _worker_context(app: web.Application) -> AsyncIterator[None]:
    """The in-process worker of `serve` (JIANBAO_SERVE_WORKER), stopped before storage closes."""
    services = app[SERVICES]
    if not serve_runs_worker(services.settings):
        yield
        return
    async with open_worker(services.settings, services.storage.database) as parts:
        if not parts.channels:
            log.info("no channel can send broadcasts; serve runs no worker")
            yield
            return
        stop = asyncio.Event()
        task = asyncio.create_task(parts.worker.run(stop))
        log.info("broadcast worker %s: sending on %s", parts.worker.name, ", ".join(parts.channels))
        try:
            yield
        finally:
            stop.set()
            await task


def _control(request: web.Request) -> BroadcastControl:
    services = request.app[SERVICES]
    return BroadcastControl(services.settings, services.storage.database)


@require_admin
async def create(request: web.Request) -> web.StreamResponse:
    body = await _json_object(request)
    settings = request.app[SERVICES].settings
    date = body.get("date")
    if not isinstance(date, str):
        raise BadInput('"date" is required: the issue date as "YYYY-MM-DD"')
    channels = body.get("channels", [])
    if isinstance(channels, str):
        channels = [channels]
    if not isinstance(channels, list) or not all(isinstance(channel, str) for channel in channels):
        raise BadInput('"channels" must be a list of channel names')
    at = body.get("at")
    if at is not None and not isinstance(at, str):
        raise BadInput('"at" must be a time like "2026-12-01 08:00+08:00"')
    flags = {name: body.get(name, False) for name in ("wechat_text", "dry_run")}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise BadInput(f'"{name}" must be true or false')
    send = SendRequest(
        parse_date(date),
        tuple(channels),
        parse_time(at, settings) if at is not None else None,
        wechat_text=flags["wechat_text"],
        dry_run=flags["dry_run"],
    )
    outcome = await _control(request).send(send)
    if isinstance(outcome, DryRun):
        return web.json_response(outcome.to_dict())
    data = outcome.broadcast.to_dict() | {"added_pending": outcome.pending, "added_skipped": outcome.skipped}
    return web.json_response(data, status=201 if outcome.created else 200)


@require_admin
async def show(request: web.Request) -> web.StreamResponse:
    control = _control(request)
    broadcast = await control.broadcasts.get(broadcast_id(request))
    return web.json_response(await control.status(broadcast))


@require_admin
async def stats(request: web.Request) -> web.StreamResponse:
    shared = request.app[STATS]
    broadcast = await _control(request).broadcasts.get(broadcast_id(request))
    tally = await shared.tally(broadcast.id)
    return web.json_response(await shared.stats.report(broadcast, tally))


@require_admin
async def steer(request: web.Request) -> web.StreamResponse:
    verb = request.path.rsplit("/", 1)[1]
    control = _control(request)
    broadcast = await getattr(control.broadcasts, verb)(broadcast_id(request))
    return web.json_response(await control.status(broadcast))


def broadcast_id(request: web.Request) -> int:
    """The route's {id}: NotFound for anything but a number a broadcast id can be (the API's and the
    console's routes alike)."""
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 9:
        raise NotFound(f"no broadcast with id {raw[:20]!r}")
    return int(raw)


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise BadInput(f"the request body is over {MAX_REQUEST_BYTES // 1024} KiB")
    raw = await request.read()
    if len(raw) > MAX_REQUEST_BYTES:
        raise BadInput(f"the request body is over {MAX_REQUEST_BYTES // 1024} KiB")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: [[[[... nested too deep
        raise BadInput("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise BadInput(f"unknown field {unknown[0][:30]!r}: use {', '.join(sorted(_FIELDS))}")
    return body
