"""The console's broadcast pages, on the same BroadcastControl as `jianbao broadcast` and /api/broadcasts.

    GET  /console/issues/{date}/broadcast     choose channels, see the audience per channel, now or later
    POST /console/issues/{date}/broadcast     start it (a second click finds the same broadcast: one per
                                              issue, the database's unique key, never two)
    GET  /console/broadcasts                  the recent broadcasts
    GET  /console/broadcasts/{id}             its live progress and the pause / resume / cancel buttons
    GET  /console/broadcasts/{id}/progress    the progress panel alone: htmx swaps it in every few seconds,
                                              and without JavaScript the page refreshes itself
    POST /console/broadcasts/{id}/pause|resume|cancel

Counts stay cheap at a million subscribers: the audience is one SQL aggregate (BroadcastStore.preview
groups subscribers by channel and topics, it does not walk them), and both it and the progress counts are
shared by every editor of the process (bot/broadcast/snapshots.py): one count per broadcast every two
seconds however many watch, none once nobody does. scripts/bench_console.py measures the pages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.broadcast.control import BroadcastControl, DryRun, SendRequest, parse_time
from bot.broadcast.routes import broadcast_id
from bot.console.auth import CONSOLE, EDITOR, local_zone, render, require_editor
from bot.console.issues import ISSUE, audit, load_issue, route_date
from bot.services import SERVICES
from content.errors import BadInput, JianbaoError, NotFound
from storage.audit import broadcast_subject, issue_subject
from storage.broadcasts import Broadcast, BroadcastState, DeliveryState, Progress

BROADCAST_NEW = "console_broadcast_new"
BROADCASTS = "console_broadcasts"
BROADCAST = "console_broadcast"
PROGRESS = "console_broadcast_progress"
STEER = "console_broadcast_steer"
# How often a watching page asks again: often enough to look live, and one grouped count per viewer
# every few seconds is nothing next to the worker's writes.
POLL_SECONDS = 3
RECENT = 50
# A time a little in the past is "now" said slowly (a form filled in at 08:00 and sent at 08:00:40).
PAST_GRACE = dt.timedelta(minutes=5)
VERBS = ("pause", "resume", "cancel")


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/issues/{date}/broadcast", broadcast_form, name=BROADCAST_NEW)
    router.add_post("/console/issues/{date}/broadcast", start_broadcast)
    router.add_get("/console/broadcasts", broadcast_list, name=BROADCASTS)
    router.add_get("/console/broadcasts/{id}", broadcast_page, name=BROADCAST)
    router.add_get("/console/broadcasts/{id}/progress", progress_panel, name=PROGRESS)
    router.add_post("/console/broadcasts/{id}/{verb}", steer, name=STEER)


def broadcast_control(request: web.Request) -> BroadcastControl:
    services = request.app[SERVICES]
    return BroadcastControl(services.settings, services.storage.database, services.channels)


def _zone(request: web.Request) -> dt.tzinfo:
    return local_zone(request.app[SERVICES].settings.timezone)


# --- starting -----------------------------------------------------------------------------------------


@require_editor
async def broadcast_form(request: web.Request) -> web.Response:
    return await _form(request, chosen=None, when="now", at="", wechat_text=False, error="")


async def _form(
    request: web.Request,
    *,
    chosen: tuple[str, ...] | None,
    when: str,
    at: str,
    wechat_text: bool,
    error: str,
    status: int = 200,
) -> web.Response:
    services = request.app[SERVICES]
    date = route_date(request)
    issue = await load_issue(services, date)
    ready = tuple(name for name, reason in services.sending_status.items() if not reason)
    control = broadcast_control(request)
    audiences = request.app[CONSOLE].audiences
    counts = await audiences.audience(control, date, ready, wechat_text=wechat_text) if ready else {}
    try:
        existing: Broadcast | None = await control.broadcasts.for_issue(date)
    except NotFound:
        existing = None
    channels = [
        (
            channel.name,
            channel.label,
            services.sending_status.get(channel.name, ""),
            counts.get(channel.name, {}),
        )
        for channel in services.channels
    ]
    return render(
        request,
        "broadcast_new.html.j2",
        status=status,
        issue=issue,
        channels=channels,
        chosen=ready if chosen is None else chosen,
        when=when,
        at=at,
        wechat_text=wechat_text,
        error=error,
        existing=existing,
        existing_url=request.app.router[BROADCAST].url_for(id=str(existing.id)) if existing else "",
        issue_url=request.app.router[ISSUE].url_for(date=date.isoformat()),
        action=request.app.router[BROADCAST_NEW].url_for(date=date.isoformat()),
        zone=request.app[SERVICES].settings.timezone,
        now=dt.datetime.now(_zone(request)).strftime("%Y-%m-%dT%H:%M"),
    )


@require_editor
async def start_broadcast(request: web.Request) -> web.Response:
    settings = request.app[SERVICES].settings
    date = route_date(request)
    form = await request.post()
    chosen = tuple(str(value)[:40] for value in form.getall("channel", []))
    when = "later" if form.get("when") == "later" else "now"
    at = str(form.get("at", "")).strip()[:40]
    wechat_text = form.get("wechat_text") == "yes"
    try:
        if not chosen:
            raise BadInput("choose at least one channel")
        moment = None
        if when == "later":
            if not at:
                raise BadInput("give the time to send at, or choose 现在发送")
            moment = parse_time(at, settings)
            # The API takes a past time as "now" (a script's clock may lag); in a form it is a slip.
            if moment < dt.datetime.now(dt.UTC) - PAST_GRACE:
                raise BadInput(f"{at} is in the past: choose a later time, or 现在发送")
        report = await broadcast_control(request).send(
            SendRequest(date, chosen, moment, wechat_text=wechat_text)
        )
    except JianbaoError as error:
        return await _form(
            request,
            chosen=chosen,
            when=when,
            at=at,
            wechat_text=wechat_text,
            error=error.message,
            status=error.status,
        )
    if isinstance(report, DryRun):  # a SendRequest without dry_run starts; it never previews
        raise TypeError("a console send came back as a dry run")
    broadcast = report.broadcast
    if report.created or report.pending:
        when = moment.astimezone(_zone(request)).strftime("at %Y-%m-%d %H:%M:%S %Z") if moment else "now"
        detail = f"{', '.join(chosen)}; {when}"
        await audit(request).record(
            request[EDITOR].name, "send", issue_subject(date), f"broadcast {broadcast.id}: {detail}"
        )
    raise web.HTTPSeeOther(request.app.router[BROADCAST].url_for(id=str(broadcast.id)))


# --- watching -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelProgress:
    name: str
    label: str
    sent: int
    failed: int
    skipped: int
    waiting: int  # pending or being sent
    total: int

    @property
    def done_percent(self) -> int:
        return 100 if not self.total else round(100 * (self.total - self.waiting) / self.total)


def progress_view(request: web.Request, broadcast: Broadcast, progress: Progress) -> dict[str, Any]:
    services = request.app[SERVICES]
    rows = []
    for name in broadcast.channels:
        counts = progress.counts.get(name, {})
        label = services.channels.get(name).label if name in services.channels else name
        rows.append(
            ChannelProgress(
                name,
                label,
                sent=counts.get(DeliveryState.SENT, 0),
                failed=counts.get(DeliveryState.FAILED, 0),
                skipped=counts.get(DeliveryState.SKIPPED, 0),
                waiting=counts.get(DeliveryState.PENDING, 0) + counts.get(DeliveryState.SENDING, 0),
                total=sum(counts.values()),
            )
        )
    eta = progress.eta_seconds
    live = _live(broadcast)
    zone = _zone(request)
    return {
        "broadcast": broadcast,
        "rows": rows,
        "rate": progress.rate_per_second,
        "eta": None if eta is None else dt.timedelta(seconds=round(eta)),
        "uncertain": progress.uncertain,
        "live": live,
        "scheduled": broadcast.start_at > dt.datetime.now(dt.UTC),
        "start_at": broadcast.start_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "finished_at": broadcast.finished_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        if broadcast.finished_at
        else "",
        "poll_seconds": POLL_SECONDS,
        "progress_url": request.app.router[PROGRESS].url_for(id=str(broadcast.id)),
        "steer_url": lambda verb: request.app.router[STEER].url_for(id=str(broadcast.id), verb=verb),
    }


async def shared_progress(request: web.Request, broadcast: Broadcast) -> Progress:
    """The broadcast's counts as this process's watchers share them (at most ~2 s old). A finished
    broadcast whose shared counts still show deliveries waiting is counted once more: the counts were
    taken before it finished, and a done page must add up."""
    snapshots = request.app[CONSOLE].progress
    progress = await snapshots.progress(broadcast.id)
    if not _live(broadcast) and progress.unfinished:
        snapshots.forget(broadcast.id)
        progress = await snapshots.progress(broadcast.id)
    return progress


def _live(broadcast: Broadcast) -> bool:
    return broadcast.state in (BroadcastState.RUNNING, BroadcastState.PAUSED)


@require_editor
async def broadcast_list(request: web.Request) -> web.Response:
    broadcasts = await broadcast_control(request).broadcasts.list(RECENT)
    router = request.app.router
    return render(
        request,
        "broadcasts.html.j2",
        broadcasts=[(broadcast, router[BROADCAST].url_for(id=str(broadcast.id))) for broadcast in broadcasts],
    )


@require_editor
async def broadcast_page(request: web.Request) -> web.Response:
    return await _broadcast_page(request, error="")


async def _broadcast_page(request: web.Request, *, error: str, status: int = 200) -> web.Response:
    control = broadcast_control(request)
    broadcast = await control.broadcasts.get(broadcast_id(request))
    progress = await shared_progress(request, broadcast)
    entries = await audit(request).recent(
        20, subjects=(broadcast_subject(broadcast.id), issue_subject(broadcast.issue_date))
    )
    return render(
        request,
        "broadcast.html.j2",
        status=status,
        error=error,
        entries=entries,
        issue_url=request.app.router[ISSUE].url_for(date=broadcast.issue_date.isoformat()),
        **progress_view(request, broadcast, progress),
    )


@require_editor
async def progress_panel(request: web.Request) -> web.Response:
    broadcast = await broadcast_control(request).broadcasts.get(broadcast_id(request))
    progress = await shared_progress(request, broadcast)
    return render(request, "broadcast_progress.html.j2", **progress_view(request, broadcast, progress))


@require_editor
async def steer(request: web.Request) -> web.Response:
    verb = request.match_info["verb"]
    if verb not in VERBS:
        raise NotFound(f"no action {verb[:20]!r} (pause, resume or cancel)")
    control = broadcast_control(request)
    try:
        broadcast = await getattr(control.broadcasts, verb)(broadcast_id(request))
    except JianbaoError as error:
        if error.status == 404:
            raise
        return await _broadcast_page(request, error=error.message, status=error.status)
    request.app[CONSOLE].progress.forget(broadcast.id)  # a cancel turns waiting rows into skipped ones
    await audit(request).record(
        request[EDITOR].name, verb, broadcast_subject(broadcast.id), str(broadcast.issue_date)
    )
    raise web.HTTPSeeOther(request.app.router[BROADCAST].url_for(id=str(broadcast.id)))
