"""After the send: what a broadcast did, per channel and per link, on one page; issues compared.

    GET  /console/broadcasts/{id}/stats          counts and rates per channel, clicks per link, clicks over
                                                 time, unsubscribes; a form per link to fix where it goes
    GET  /console/broadcasts/{id}/stats.csv      ?part=channels|links: the same tables as CSV
    POST /console/broadcasts/{id}/links          fix a link after sending: later clicks follow the new URL
    GET  /console/compare                        click and unsubscribe rates over the last N broadcasts

The figures are storage/broadcast_stats.py's report, the same as `jianbao broadcast stats --json` and
GET /api/broadcasts/{id}/stats: delivery counts come from a tally kept once a broadcast has finished
(shared by every viewer while it runs, bot/broadcast/snapshots.py), clicks from per-link and per-hour
counters kept as clicks are recorded (storage/clicks.py): no page scans the deliveries or the clicks.
Charts are drawn by console-charts.js from the tables on the page, which stay for screen readers and for
browsers without JavaScript.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from aiohttp import web

from bot.broadcast.routes import broadcast_id
from bot.click_buffer import CLICKS
from bot.console.auth import CONSOLE, EDITOR, render, require_editor
from bot.console.broadcasts import BROADCAST, broadcast_control
from bot.console.issues import audit
from bot.services import SERVICES
from content.errors import BadInput, JianbaoError, NotFound
from storage.audit import broadcast_subject
from storage.broadcast_stats import TALLY_FIELDS, without_utm
from storage.broadcasts import Broadcast
from storage.clicks import HourClicks

STATS = "console_broadcast_stats"
STATS_CSV = "console_broadcast_stats_csv"
LINKS = "console_broadcast_links"
COMPARE = "console_compare"
# Clicks are shown per hour for the first days after the send, when they come, then per day.
HOURLY_DAYS = 3
MAX_DAYS = 90  # days shown after a send; clicks after that are still counted per link
COMPARE_DEFAULT = 10
COMPARE_MAX = 50
MAX_URL_CHARS = 2048


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/broadcasts/{id}/stats", stats_page, name=STATS)
    router.add_get("/console/broadcasts/{id}/stats.csv", stats_csv, name=STATS_CSV)
    router.add_post("/console/broadcasts/{id}/links", fix_link, name=LINKS)
    router.add_get("/console/compare", compare_page, name=COMPARE)


@dataclass(frozen=True, slots=True)
class ChannelRow:
    name: str
    label: str
    counts: dict[str, int]
    attempted: int  # everything but skipped: what the rates are of
    unsubscribes: int
    joined: int  # new subscribers in the days after (attribution by time, as unsubscribes)

    def rate(self, key: str) -> float:
        return self.counts.get(key, 0) / self.attempted if self.attempted else 0.0

    @property
    def click_rate(self) -> float:
        sent = self.counts.get("sent", 0)
        return self.counts.get("unique_clicks", 0) / sent if sent else 0.0

    @property
    def unsubscribe_rate(self) -> float:
        sent = self.counts.get("sent", 0)
        return self.unsubscribes / sent if sent else 0.0


async def _report(request: web.Request, broadcast: Broadcast) -> dict[str, object]:
    shared = request.app[CONSOLE].stats
    return await shared.stats.report(broadcast, await shared.tally(broadcast.id))


def _rows(request: web.Request, report: dict[str, object], joined: dict[str, int]) -> list[ChannelRow]:
    channels = request.app[SERVICES].channels
    unsubscribes = report["unsubscribes"]
    assert isinstance(unsubscribes, dict)
    rows = []
    for name, counts in dict(report["channels"]).items():  # type: ignore[call-overload]
        label = channels.get(name).label if name in channels else name
        attempted = sum(counts[key] for key in TALLY_FIELDS if key not in ("skipped", "uncertain"))
        rows.append(
            ChannelRow(name, label, counts, attempted, int(unsubscribes.get(name, 0)), joined.get(name, 0))
        )
    return rows


def timeline_rows(
    hours: list[HourClicks], start: dt.datetime, now: dt.datetime
) -> tuple[list[tuple[dt.datetime, int, int, str]], list[tuple[dt.datetime, int, int, str]]]:
    """Two series of (bucket start, clicks, unique clicks, label): every hour of the first HOURLY_DAYS after
    `start`, and every day since `start`. Every bucket is present: a quiet hour is a 0, not a gap the
    chart would draw across. Two series, not one that turns daily: a day's sum beside an hour's would
    look like a surge."""
    first_hour = start.replace(minute=0, second=0, microsecond=0)
    hourly_end = min(now, start + dt.timedelta(days=HOURLY_DAYS))
    hourly: dict[dt.datetime, list[int]] = {}
    moment = first_hour
    while moment <= hourly_end:
        hourly[moment] = [0, 0]
        moment += dt.timedelta(hours=1)
    first_day = first_hour.replace(hour=0)
    daily: dict[dt.datetime, list[int]] = {}
    moment = first_day
    while moment <= min(now, first_day + dt.timedelta(days=MAX_DAYS)):
        daily[moment] = [0, 0]
        moment += dt.timedelta(days=1)
    for hour in hours:
        for buckets, key in ((hourly, hour.hour), (daily, hour.hour.replace(hour=0))):
            if key in buckets:
                buckets[key][0] += hour.clicks
                buckets[key][1] += hour.unique_clicks
    return (
        [(key, c, u, key.strftime("%m-%d %H:00")) for key, (c, u) in sorted(hourly.items())],
        [(key, c, u, key.strftime("%Y-%m-%d")) for key, (c, u) in sorted(daily.items())],
    )


@require_editor
async def stats_page(request: web.Request) -> web.Response:
    return await _stats_page(request, error="", notice="")


async def _stats_page(request: web.Request, *, error: str, notice: str, status: int = 200) -> web.Response:
    control = broadcast_control(request)
    broadcast = await control.broadcasts.get(broadcast_id(request))
    report = await _report(request, broadcast)
    clicks = request.app[CLICKS].store
    now = dt.datetime.now(dt.UTC)
    hours = await clicks.timeline(broadcast.issue_date, broadcast.start_at)
    router = request.app.router
    return render(
        request,
        "broadcast_stats.html.j2",
        status=status,
        error=error,
        notice=notice,
        broadcast=broadcast,
        report=report,
        rows=_rows(request, report, await request.app[CONSOLE].stats.stats.new_subscribers(broadcast)),
        timelines=timeline_rows(hours, broadcast.start_at, now),
        hourly_days=HOURLY_DAYS,
        broadcast_url=router[BROADCAST].url_for(id=str(broadcast.id)),
        csv_url=lambda part: router[STATS_CSV].url_for(id=str(broadcast.id)).with_query(part=part),
        links_url=router[LINKS].url_for(id=str(broadcast.id)),
        compare_url=router[COMPARE].url_for(),
        chart_script=router["static"].url_for(filename="console-charts.js"),
        uplot_script=router["static"].url_for(filename="vendor/uplot-1.6.32.iife.min.js"),
        uplot_style=router["static"].url_for(filename="vendor/uplot-1.6.32.min.css"),
    )


@require_editor
async def stats_csv(request: web.Request) -> web.StreamResponse:
    broadcast = await broadcast_control(request).broadcasts.get(broadcast_id(request))
    report = await _report(request, broadcast)
    part = request.query.get("part", "links")
    out = io.StringIO()
    writer = csv.writer(out)
    if part == "channels":
        writer.writerow(["channel", *TALLY_FIELDS, "clicks", "unique_clicks", "unsubscribes"])
        unsubscribes = dict(report["unsubscribes"])  # type: ignore[call-overload]
        for name, counts in dict(report["channels"]).items():  # type: ignore[call-overload]
            values = [counts[key] for key in (*TALLY_FIELDS, "clicks", "unique_clicks")]
            writer.writerow([name, *values, unsubscribes.get(name, 0)])
    elif part == "links":
        writer.writerow(["url", "section", "title", "clicks", "unique_clicks"])
        for link in list(report["links"]):  # type: ignore[call-overload]
            writer.writerow(
                [_cell(link[key]) for key in ("url", "section", "title", "clicks", "unique_clicks")]
            )
    else:
        raise BadInput("part must be channels or links")
    name = f"jianbao-{broadcast.issue_date}-{part}.csv"
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),  # the BOM: Excel then reads the Chinese right
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP: CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@require_editor
async def fix_link(request: web.Request) -> web.Response:
    broadcast = await broadcast_control(request).broadcasts.get(broadcast_id(request))
    form = await request.post()
    old = str(form.get("url", ""))[:MAX_URL_CHARS]
    new = str(form.get("new_url", "")).strip()[:MAX_URL_CHARS]
    clicks = request.app[CLICKS].store
    try:
        tokens = [
            link.token
            for link in await clicks.link_stats(broadcast.issue_date)
            if without_utm(link.url) == old and link.channel in broadcast.channels
        ]
        if not tokens:
            raise NotFound("this broadcast has no tracked link to that address")
        for token in tokens:
            await clicks.set_url(token, new)
    except JianbaoError as error:
        return await _stats_page(request, error=error.message, notice="", status=error.status)
    await audit(request).record(
        request[EDITOR].name, "fix_link", broadcast_subject(broadcast.id), f"{old} → {new}"
    )
    return await _stats_page(request, error="", notice=f"已改：之后点 {old} 的人会去 {new}")


@require_editor
async def compare_page(request: web.Request) -> web.Response:
    raw = request.query.get("n", "")
    count = (
        min(int(raw), COMPARE_MAX) if raw.isdigit() and 0 < len(raw) < 4 and int(raw) > 0 else COMPARE_DEFAULT
    )
    control = broadcast_control(request)
    rows = []
    for broadcast in reversed(await control.broadcasts.list(count)):
        report = await _report(request, broadcast)
        channels = dict(report["channels"])  # type: ignore[call-overload]
        sent = sum(counts["sent"] for counts in channels.values())
        unique = sum(counts["unique_clicks"] for counts in channels.values())
        left = sum(dict(report["unsubscribes"]).values())  # type: ignore[call-overload]
        rows.append(
            (
                broadcast,
                sent,
                100 * unique / sent if sent else 0.0,
                100 * left / sent if sent else 0.0,
                request.app.router[STATS].url_for(id=str(broadcast.id)),
            )
        )
    router = request.app.router
    return render(
        request,
        "compare.html.j2",
        rows=rows,
        count=count,
        chart_script=router["static"].url_for(filename="console-charts.js"),
        uplot_script=router["static"].url_for(filename="vendor/uplot-1.6.32.iife.min.js"),
        uplot_style=router["static"].url_for(filename="vendor/uplot-1.6.32.min.css"),
    )
