"""The console's issue pages: bring in an issue (upload or paste), preview it on every channel, test-send it.

    GET  /console/issues/new                      the form: a file, or Markdown pasted
    POST /console/issues/new                      parsed off the event loop; errors shown with their line;
                                                  nothing is stored until it parses, and an issue whose
                                                  date is already taken is replaced only when confirmed
    GET  /console/issues/{date}                   every channel side by side (?digest=1: one message)
    GET  /console/issues/{date}/frame/{channel}   the email or WeChat article, for a sandboxed iframe
    POST /console/issues/{date}/test-send         to the editor's own chat, openid or address

Every action lands in the audit trail.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from aiohttp import web
from multidict import MultiDictProxy

from bot.console.auth import CONSOLE, EDITOR, render, require_editor
from bot.console.previews import channel_previews, frame_document
from bot.http_policy import IFRAME_CONTENT_SECURITY_POLICY
from bot.rendering import Renderer
from bot.services import SERVICES, Services
from bot.site import issue_url
from channels.fitting import DoesNotFit
from content.errors import BadInput, IssueFormatError, JianbaoError, NotFound
from content.model import Issue
from content.parser import parse_issue
from content.source import MAX_ISSUE_BYTES, IssueSource, decode_issue
from storage.audit import AuditTrail, issue_subject

ISSUE_NEW = "console_issue_new"
ISSUE = "console_issue"
FRAME = "console_issue_frame"
TEST_SEND = "console_test_send"
# A test send waits at most this long for the platform: the page answers either way.
TEST_SEND_SECONDS = 20.0
MAX_ADDRESS_CHARS = 320


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/issues/new", new_issue_page, name=ISSUE_NEW)
    router.add_post("/console/issues/new", import_issue)
    router.add_get("/console/issues/{date}", issue_page, name=ISSUE)
    router.add_get("/console/issues/{date}/frame/{channel}", frame, name=FRAME)
    router.add_post("/console/issues/{date}/test-send", test_send, name=TEST_SEND)


def audit(request: web.Request) -> AuditTrail:
    return AuditTrail(request.app[SERVICES].storage.database)


def route_date(request: web.Request) -> dt.date:
    raw = request.match_info["date"]
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise NotFound(f"no issue of {raw[:20]!r}") from None


async def load_issue(services: Services, date: dt.date) -> Issue:
    issue = await services.storage.issues.get(date)
    if issue is None:
        raise NotFound(f"no issue of {date}")
    return issue


# --- bringing in an issue -----------------------------------------------------------------------------


@require_editor
async def new_issue_page(request: web.Request) -> web.Response:
    return _form(request, text="", error=None)


def _form(
    request: web.Request,
    *,
    text: str,
    error: IssueFormatError | BadInput | None,
    status: int = 200,
    replaces: Issue | None = None,
) -> web.Response:
    line = getattr(error, "line", None)
    lines = text.split("\n")
    context = []
    if line is not None and 1 <= line <= len(lines):
        # The lines around the faulty one, numbered as an editor's text editor numbers them.
        context = [
            (number, lines[number - 1]) for number in range(max(1, line - 2), min(len(lines), line + 2) + 1)
        ]
    return render(
        request,
        "issue_new.html.j2",
        status=status,
        action=request.app.router[ISSUE_NEW].url_for(),
        text=text,
        error=error.message if error else "",
        error_line=line,
        context=context,
        replaces=replaces,
        max_kib=MAX_ISSUE_BYTES // 1024,
    )


@require_editor
async def import_issue(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    form = await request.post()
    try:
        data, name = _upload(form)
    except BadInput as error:
        return _form(request, text="", error=error, status=error.status)
    try:
        # Markdown parsing is CPU work (up to seconds for a hostile 256 KiB file): off the event loop,
        # so the bots sharing this process keep answering.
        source, issue = await asyncio.to_thread(_parse, data, name)
    except IssueFormatError as error:  # TooLarge is a BadInput too, and says the limit
        return _form(request, text=_as_text(data), error=error, status=422)
    except BadInput as error:
        return _form(request, text=_as_text(data), error=error, status=error.status)
    existing = await services.storage.issues.get(issue.date)
    if existing is not None and existing.content_hash != issue.content_hash and form.get("replace") != "yes":
        return _form(request, text=source.text, error=None, status=409, replaces=existing)
    try:
        outcome = await services.storage.issues.save(issue, source.text)
    except BadInput as error:
        return _form(request, text=source.text, error=error, status=error.status)
    editor = request[EDITOR]
    await audit(request).record(
        editor.name, "import", issue_subject(issue.date), f"{outcome}, {issue.item_count} 条"
    )
    raise web.HTTPSeeOther(request.app.router[ISSUE].url_for(date=issue.date.isoformat()))


def _upload(form: MultiDictProxy[str | bytes | bytearray | web.FileField]) -> tuple[bytes, str | None]:
    upload = form.get("file")
    if isinstance(upload, web.FileField) and upload.filename:
        data = upload.file.read(MAX_ISSUE_BYTES + 1)
        return data, upload.filename[:200]
    text = form.get("markdown")
    if isinstance(text, str) and text.strip():
        # A browser sends a textarea's line ends as CRLF; decode_issue makes them LF.
        return text.encode("utf-8", "surrogatepass"), None
    raise BadInput("choose an issue file or paste its Markdown")


def _parse(data: bytes, name: str | None) -> tuple[IssueSource, Issue]:
    source = decode_issue(data, name)
    return source, parse_issue(source)


def _as_text(data: bytes) -> str:
    """What to put back in the form after an error: the text as far as it can be read."""
    return data[:MAX_ISSUE_BYTES].decode("utf-8", "replace").replace("\r\n", "\n").replace("\x00", "")


# --- previews -----------------------------------------------------------------------------------------


@require_editor
async def issue_page(request: web.Request) -> web.Response:
    return await _issue_page(request, notice="")


async def _issue_page(request: web.Request, *, notice: str, status: int = 200) -> web.Response:
    services = request.app[SERVICES]
    date = route_date(request)
    issue = await load_issue(services, date)
    digest = request.query.get("digest") == "1"
    cache, key = request.app[CONSOLE].previews, (date, issue.content_hash, digest)
    previews = cache.get(key)
    if previews is None:
        previews = await asyncio.to_thread(
            channel_previews, services.settings, services.channels, issue, digest=digest
        )
        cache[key] = previews
    if request.method == "GET":
        detail = "digest" if digest else ""
        await audit(request).record(request[EDITOR].name, "preview", issue_subject(date), detail)
    router = request.app.router
    return render(
        request,
        "issue.html.j2",
        status=status,
        issue=issue,
        previews=previews,
        digest=digest,
        notice=notice,
        public_url=str(issue_url(request.app, date)),
        page_url=router[ISSUE].url_for(date=date.isoformat()),
        frame_url=lambda name: router[FRAME].url_for(date=date.isoformat(), channel=name),
        test_send_url=router[TEST_SEND].url_for(date=date.isoformat()),
        broadcast_url=router["console_broadcast_new"].url_for(date=date.isoformat()),
        senders=[name for name, reason in services.sending_status.items() if not reason],
    )


@require_editor
async def frame(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    date = route_date(request)
    name = request.match_info["channel"]
    if name not in services.channels:
        raise NotFound(f"no channel {name[:20]!r}")
    issue = await load_issue(services, date)
    cache, key = request.app[CONSOLE].frames, (date, issue.content_hash, name)
    html = cache.get(key)
    if key not in cache:
        try:
            html = await asyncio.to_thread(frame_document, services.settings, services.channels, issue, name)
        except DoesNotFit as error:
            raise BadInput(f"{name}: {error}") from None
        cache[key] = html
    if html is None:
        raise NotFound(f"{name} has no framed preview")
    response = web.Response(text=html, content_type="text/html")
    # The mail and the article are documents of their own: inline styles (as sent), no scripts, no
    # forms, shown only inside our console page (the iframe adds its own sandbox too).
    response.headers["Content-Security-Policy"] = IFRAME_CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response


# --- test sends ---------------------------------------------------------------------------------------


@require_editor
async def test_send(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    date = route_date(request)
    issue = await load_issue(services, date)
    form = await request.post()
    name = str(form.get("channel", ""))[:40]
    address = str(form.get("address", "")).strip()[:MAX_ADDRESS_CHARS]
    try:
        notice = await _send_test(services, issue, name, address)
    except JianbaoError as error:
        return await _issue_page(request, notice=f"试发失败：{error.message}", status=error.status)
    await audit(request).record(request[EDITOR].name, "test_send", issue_subject(date), f"{name} → {address}")
    return await _issue_page(request, notice=notice)


async def _send_test(services: Services, issue: Issue, name: str, address: str) -> str:
    if name not in services.channels:
        raise BadInput(f"no channel {name!r}: choose one of {', '.join(services.channels.names)}")
    reason = services.sending_status.get(name, "")
    if reason:
        raise BadInput(f"{name} cannot send: {reason}")
    if not address:
        raise BadInput("give the address to send the test to")
    channel = services.channels.get(name)
    address = channel.check_address(address)
    # Its own Renderer: the shared one's Markdown parser is not for other threads.
    renderer = Renderer(services.settings, services.channels)
    rendered = await asyncio.to_thread(renderer.render, issue, name)
    sender = await channel.open_sender(services.settings)
    try:
        outcome = await asyncio.wait_for(channel.test_send(sender, rendered, address), TEST_SEND_SECONDS)
    except TimeoutError:
        outcome = None
    finally:
        await sender.close()
    if outcome is None or outcome.finished or outcome.parts_done:
        # A click on a test message's tracked link must find its token, as after the worker's sends. Kept
        # only once something may have gone out: a refused test send leaves no rows behind.
        tracked = [(link.token, link.original) for link in rendered.links if link.token]
        await services.links.remember(name, issue.date, tracked)
    if outcome is None:
        return f"试发到 {address}：{TEST_SEND_SECONDS:.0f} 秒内没有答复，可能已送达"
    if outcome.finished:
        return f"已试发到 {channel.label} {address}（{outcome.parts_done} 条）"
    why = outcome.pushed.error or outcome.pushed.status.value
    raise BadInput(f"{channel.label} 没有收下：{why}")
