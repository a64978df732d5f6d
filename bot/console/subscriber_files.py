"""The subscriber desk's files and figures: import a CSV after a preview, export one, watch growth.

    GET  /console/subscribers/import       the upload form
    POST /console/subscribers/import       with a file: the preview (nothing stored); with `confirm`: import
    GET  /console/subscribers/export.csv   the subscribers of ?channel=&status=&topic=, streamed
    GET  /console/growth                   active subscribers per channel at each day's end, joins, leaves

The CSV is read by bot/subscriber_csv.py, the command line's reader: same header, same row rules, bad rows
with their line numbers; the preview's counts come from SubscriberStore.plan_import and the import is
SubscriberStore.import_active, the command line's (transactions of IMPORT_BATCH rows; someone who left is
kept out). The preview carries the file to the confirm step as its bytes in base64 in a hidden field with
an HMAC of them (and of the editor's name) under a key derived from JIANBAO_SECRET_KEY: the editor confirms
what they saw with one click, and a changed field is refused, where a second upload could be another file.
Base64 because the bytes must come back exact, and a form field's line ends and NULs do not. That field
must fit the app's request cap (bot/app.py MAX_BODY_BYTES) with the rest of the form, hence MAX_CSV_BYTES.

The audit trail gets counts and filters, never an address (bot/console/subscribers.py says why). An export
is a keyset walk by id (SubscriberStore.search, EXPORT_PAGE rows a query) written as it goes, never the
whole table in memory; a cell a spreadsheet would take for a formula gets a leading '.

The growth figures (storage/subscriber_growth.py) are range counts over ix_subscriber_created_at and
ix_subscriber_left_at; each process shares one count per window and minute between its editors
(GROWTH_FRESH_SECONDS, bot/broadcast/snapshots.py Snapshots).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiohttp import web

from bot.broadcast.snapshots import Snapshots
from bot.console.auth import EDITOR, local_zone, render, require_editor
from bot.console.issues import audit
from bot.services import SERVICES
from bot.subscriber_csv import CSV_COLUMNS, ParsedCsv, csv_cells, csv_text, decode_csv, parse_subscriber_csv
from content.errors import BadInput, JianbaoError, TooLarge
from storage.subscriber_growth import Growth, SubscriberGrowth
from storage.subscribers import (
    MAX_SEARCH_LIMIT,
    MAX_TOPIC_LENGTH,
    ImportOutcome,
    SubscriberStatus,
    SubscriberStore,
)

IMPORT = "console_subscribers_import"
EXPORT = "console_subscribers_export"
GROWTH = "console_growth"
# The upload: its base64 (4/3 of it) must come back in the confirm form within the app's request cap
# (bot/app.py MAX_BODY_BYTES, 1 MiB), with room for the rest of the form.
MAX_CSV_BYTES = 640 * 1024
EXPORT_PAGE = MAX_SEARCH_LIMIT
# Bad rows listed on the preview page; the count says how many more.
SHOWN_ERRORS = 200
# Where a confirm tag's key comes from: JIANBAO_SECRET_KEY with this purpose (a key of its own).
_KEY_PURPOSE = b"jianbao console subscriber import"
AUDIT_SUBJECT = "subscribers"
GROWTH_DAYS = 90
MAX_GROWTH_DAYS = 366
# Joins and leaves change by the minute at most as far as a chart of days can show.
GROWTH_FRESH_SECONDS = 60.0
GROWTH_STALE_SECONDS = 600.0
STATUSES = tuple(status.value for status in SubscriberStatus)

GROWTH_SNAPSHOTS = web.AppKey("console_growth_snapshots", Snapshots[tuple[object, ...], Growth])


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/subscribers/import", import_page, name=IMPORT)
    router.add_post("/console/subscribers/import", import_post, name=IMPORT)
    router.add_get("/console/subscribers/export.csv", export_csv, name=EXPORT)
    router.add_get("/console/growth", growth_page, name=GROWTH)
    app.cleanup_ctx.append(_context)


async def _context(app: web.Application) -> AsyncIterator[None]:
    app[GROWTH_SNAPSHOTS] = Snapshots(fresh_seconds=GROWTH_FRESH_SECONDS, stale_seconds=GROWTH_STALE_SECONDS)
    try:
        yield
    finally:
        await app[GROWTH_SNAPSHOTS].close()


def _store(request: web.Request) -> SubscriberStore:
    return request.app[SERVICES].subscribers


# --- import -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    outcomes: Counter[ImportOutcome]
    rows: int
    bad: Sequence[tuple[int, str]]
    payload: str  # the file, base64
    tag: str


@require_editor
async def import_page(request: web.Request) -> web.Response:
    return _import_page(request)


def _import_page(
    request: web.Request,
    *,
    error: str = "",
    status: int = 200,
    preview: Preview | None = None,
    done: Counter[ImportOutcome] | None = None,
) -> web.Response:
    return render(
        request,
        "subscriber_import.html.j2",
        status=status,
        error=error,
        preview=preview,
        done=done,
        shown_errors=SHOWN_ERRORS,
        max_kib=MAX_CSV_BYTES // 1024,
        action=request.app.router[IMPORT].url_for(),
        export_url=request.app.router[EXPORT].url_for(),
        channels=[(channel.name, channel.label) for channel in request.app[SERVICES].channels],
        statuses=STATUSES,
    )


@require_editor
async def import_post(request: web.Request) -> web.Response:
    form = await request.post()
    editor = request[EDITOR].name
    try:
        if form.get("confirm"):
            data = _confirmed_bytes(request, editor, form.get("payload"), form.get("tag"))
            parsed = await _parse(request, data)
            outcomes = Counter(await _store(request).import_active([row for _, row in parsed.rows]))
            counts = ", ".join(f"{outcomes[outcome]} {outcome.value}" for outcome in ImportOutcome)
            detail = f"{counts}, {len(parsed.bad)} bad rows"
            await audit(request).record(editor, "import_subscribers", AUDIT_SUBJECT, detail)
            return _import_page(request, done=outcomes)
        upload = form.get("file")
        if not isinstance(upload, web.FileField) or not upload.filename:
            raise BadInput("choose a CSV file to upload")
        data = upload.file.read(MAX_CSV_BYTES + 1)
        if len(data) > MAX_CSV_BYTES:
            raise TooLarge(f"the file is larger than {MAX_CSV_BYTES // 1024} KB: split it")
        parsed = await _parse(request, data)
        planned = Counter(await _store(request).plan_import([row for _, row in parsed.rows]))
    except JianbaoError as failure:
        return _import_page(request, error=failure.message, status=failure.status)
    preview = Preview(
        outcomes=planned,
        rows=len(parsed.rows),
        bad=parsed.bad,
        payload=base64.b64encode(data).decode("ascii"),
        tag=_tag(request, editor, data),
    )
    return _import_page(request, preview=preview)


async def _parse(request: web.Request, data: bytes) -> ParsedCsv:
    """The file read off the event loop (a 600 KB file is ~10,000 rows to check); BadInput for a file
    that is not UTF-8, not CSV, without the header or without a single row."""
    channels = request.app[SERVICES].channels
    parsed = await asyncio.to_thread(lambda: parse_subscriber_csv(decode_csv(data), channels))
    if not parsed.rows and not parsed.bad:
        raise BadInput("the file has no subscriber rows under its header")
    return parsed


def _tag(request: web.Request, editor: str, data: bytes) -> str:
    secret = request.app[SERVICES].settings.secret_key
    key = hmac.new(secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()
    message = editor.encode() + b"\n" + data
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _confirmed_bytes(request: web.Request, editor: str, payload: object, tag: object) -> bytes:
    """The previewed file, or BadInput when the confirm form is not the one the preview made for this
    editor (its tag does not match)."""
    refused = BadInput("this is not the file that was previewed: upload it again")
    if not isinstance(payload, str) or not isinstance(tag, str):
        raise refused
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise refused from None
    expected = _tag(request, editor, data)
    if len(data) > MAX_CSV_BYTES or not hmac.compare_digest(tag.encode(), expected.encode()):
        raise refused
    return data


# --- export -------------------------------------------------------------------------------------------


@require_editor
async def export_csv(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    query = request.query
    channel = query.get("channel", "")
    status = query.get("status", "")
    topic = query.get("topic", "").strip()
    if channel and channel not in services.channels:
        raise BadInput(f"no channel {channel[:20]!r}: choose one of {', '.join(services.channels.names)}")
    if status and status not in STATUSES:
        raise BadInput(f"status must be one of {', '.join(STATUSES)}")
    if len(topic) > MAX_TOPIC_LENGTH or not topic.isprintable():
        raise BadInput(f"a topic is at most {MAX_TOPIC_LENGTH} printable characters")
    filters = {"channel": channel, "status": status, "topic": topic}
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="subscribers.csv"',
        "Cache-Control": "no-store",
    }
    if request.method == "HEAD":  # the headers only: no export took place, so none is audited
        return web.Response(headers=headers)
    detail = " ".join(f"{name}={value}" for name, value in filters.items() if value) or "all"
    await audit(request).record(request[EDITOR].name, "export_subscribers", AUDIT_SUBJECT, detail)

    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    # A byte order mark: what a spreadsheet needs to read UTF-8 (the import skips it).
    await response.write(("\ufeff" + csv_text([CSV_COLUMNS])).encode())
    after = 0
    while True:
        page = await _store(request).search(
            channel=channel or None,
            status=SubscriberStatus(status) if status else None,
            topic=topic or None,
            after_id=after,
            limit=EXPORT_PAGE,
        )
        if page.subscribers:
            records = [csv_cells(row, guard_formulas=True) for row in page.subscribers]
            await response.write(csv_text(records).encode())
        if page.next_after_id is None:
            break
        after = page.next_after_id
    await response.write_eof()
    return response


# --- growth -------------------------------------------------------------------------------------------


@require_editor
async def growth_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    raw = request.query.get("days", "")
    if raw and (
        not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or not 1 <= int(raw) <= MAX_GROWTH_DAYS
    ):
        raise BadInput(f"days must be a number from 1 to {MAX_GROWTH_DAYS}")
    days = int(raw) if raw else GROWTH_DAYS
    zone = local_zone(services.settings.timezone)
    today = dt.datetime.now(zone).date()
    first = today - dt.timedelta(days=days - 1)
    growth = await request.app[GROWTH_SNAPSHOTS].get(
        (first, today, str(zone)),
        lambda: SubscriberGrowth(services.storage.database).daily(first, today, zone),
    )
    channels = services.channels
    names = list(growth.channels)
    labels = [channels.get(name).label if name in channels else name for name in names]
    router = request.app.router
    return render(
        request,
        "growth.html.j2",
        days=days,
        labels=labels,
        rows=[
            (
                dt.datetime.combine(day, dt.time(), zone).isoformat(),
                day.isoformat(),
                [growth.channels[name][index] for name in names],
            )
            for index, day in enumerate(growth.days)
        ],
        fresh_seconds=int(GROWTH_FRESH_SECONDS),
        import_url=router[IMPORT].url_for(),
        chart_script=router["static"].url_for(filename="console-charts.js"),
        uplot_script=router["static"].url_for(filename="vendor/uplot-1.6.32.iife.min.js"),
        uplot_style=router["static"].url_for(filename="vendor/uplot-1.6.32.min.css"),
    )
