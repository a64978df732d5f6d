"""Signing in to the console: editor accounts (`jianbao editors add`), a session cookie, and limits on
guessing.

- The session cookie holds a random token; the database keeps its SHA-256 (storage/editors.py). It is
  HttpOnly, SameSite=Lax, Path=/console, Secure when PUBLIC_URL is https, and lasts SESSION_HOURS. Every
  sign-in makes a new token (a token planted before sign-in is worth nothing after), and signing out
  deletes the session.
- Every form carries the app's CSRF pair (bot/csrf.py), the sign-in form included.
- Wrong passwords are limited per account and per client address: after LOGIN_FAILURES within
  LOGIN_WINDOW_SECONDS, further tries are refused with 429 and Retry-After, right or wrong, until the
  window has passed. A name that does not exist costs the same time as one that does.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from cachetools import LRUCache
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from multidict import MultiDictProxy

from bot.broadcast.snapshots import AudienceSnapshots, ProgressSnapshots, StatsSnapshots
from bot.console.passwords import hash_password, needs_rehash, password_matches
from bot.csrf import FORM_GUARD
from bot.services import SERVICES
from bot.site import STATIC
from bot.throttle import WindowCounter
from channels.base import TEMPLATE_DIR
from content.errors import BadInput, TooManyRequests
from storage.broadcast_stats import BroadcastStats
from storage.broadcasts import BroadcastStore
from storage.clicks import ClickStore
from storage.editors import Editor, EditorStore

COOKIE = "jianbao_console"
SESSION_HOURS = 12
LOGIN_FAILURES = 5
LOGIN_WINDOW_SECONDS = 15 * 60
MAX_NAME_CHARS = 64
PREVIEWS_KEPT = 16  # issues (full and digest) whose previews are kept rendered
# htmx, vendored under /static (templates/site/static/vendor/README.md says how to update it).
HTMX_SCRIPT = "vendor/htmx-2.0.11.min.js"

# The console's menu: (label, route name); routes are added by the console's other modules.
NAV = (
    ("简报", "console_home"),
    ("导入", "console_issue_new"),
    ("发送", "console_broadcasts"),
    ("比较", "console_compare"),
    ("订阅者", "console_subscribers"),
    ("增长", "console_growth"),
    ("记录", "console_audit"),
)

SIGN_IN = "console_sign_in"
SIGN_OUT = "console_sign_out"
HOME = "console_home"


@dataclass
class ConsoleState:
    editors: EditorStore
    templates: Environment
    secure_cookie: bool
    failures_by_name: WindowCounter
    failures_by_address: WindowCounter
    # Counts every watching editor of this process shares (bot/broadcast/snapshots.py): a progress
    # panel polled by ten editors costs one count every two seconds, not ten.
    progress: ProgressSnapshots
    audiences: AudienceSnapshots
    stats: StatsSnapshots  # a broadcast's figures after the send (kept once it has finished)
    # Rendered previews by (date, content hash, digest) and frames by (date, content hash, channel):
    # rendering every channel costs ~100 ms of CPU, and an issue's preview only changes with its content.
    previews: LRUCache[tuple[object, ...], Any]
    frames: LRUCache[tuple[object, ...], Any]


CONSOLE = web.AppKey("console", ConsoleState)
EDITOR = web.RequestKey("console_editor", Editor)  # the signed-in editor of a request

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/sign-in", sign_in_page, name=SIGN_IN)
    router.add_post("/console/sign-in", sign_in, name=SIGN_IN)
    router.add_post("/console/sign-out", sign_out, name=SIGN_OUT)
    app.cleanup_ctx.append(_context)


async def _context(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    templates = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR / "console"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
    )
    # Every time on a console page is in the newsletter's own zone (JIANBAO_TIMEZONE), the one a
    # scheduled send is typed in, and says so.
    zone = local_zone(services.settings.timezone)
    templates.globals["zone"] = str(zone)
    templates.filters["local"] = lambda moment: moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    app[CONSOLE] = ConsoleState(
        editors=EditorStore(services.storage.database),
        templates=templates,
        secure_cookie=app[FORM_GUARD].secure,  # one rule for the app's cookies: https PUBLIC_URL
        failures_by_name=WindowCounter(LOGIN_FAILURES, LOGIN_WINDOW_SECONDS),
        failures_by_address=WindowCounter(LOGIN_FAILURES, LOGIN_WINDOW_SECONDS),
        progress=ProgressSnapshots(BroadcastStore(services.storage.database)),
        audiences=AudienceSnapshots(),
        stats=StatsSnapshots(
            BroadcastStats(services.storage.database, links=ClickStore(services.storage.database))
        ),
        previews=LRUCache(maxsize=PREVIEWS_KEPT),
        frames=LRUCache(maxsize=PREVIEWS_KEPT * 2),
    )
    try:
        yield
    finally:
        # Counts still running are cancelled before storage closes (this context ends first).
        await app[CONSOLE].progress.close()
        await app[CONSOLE].audiences.close()
        await app[CONSOLE].stats.close()


def local_zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def render(request: web.Request, template: str, *, status: int = 200, **values: object) -> web.Response:
    """A console page with the CSRF pair for its forms (the cookie is set on the response)."""
    token = request.app[FORM_GUARD].offer(request)
    router = request.app.router
    html = (
        request.app[CONSOLE]
        .templates.get_template(template)
        .render(
            csrf_field=token.field,
            sign_in_url=request.app.router[SIGN_IN].url_for(),
            sign_out_url=request.app.router[SIGN_OUT].url_for(),
            home_url=request.app.router[HOME].url_for(),
            stylesheet_url=request.app.router[STATIC].url_for(filename="console.css"),
            script_url=request.app.router[STATIC].url_for(filename=HTMX_SCRIPT),
            editor=request.get(EDITOR),
            nav=[(label, router[name].url_for()) for label, name in NAV if name in router],
            **values,
        )
    )
    response = web.Response(text=html, content_type="text/html", status=status)
    token.set_cookie(response)
    # After the cookie (which asks for "private"): pages behind a sign-in stay out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


async def current_editor(request: web.Request) -> Editor | None:
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > 128:
        return None
    return await request.app[CONSOLE].editors.session_editor(token)


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The posted form, or BadInput (400) for a body that cannot be read as one. The body is read
    once; handlers behind `require_editor` get the same form from `request.post()` again."""
    try:
        return await request.post()
    # ValueError: bytes that are not the charset's, a multipart part without a name or an end;
    # LookupError: a charset Python does not know; BadHttpMessage: a part's headers broken or too long.
    except (ValueError, LookupError, BadHttpMessage):
        raise BadInput("the form could not be read: send it from the console's page") from None


def require_editor(handler: Handler) -> Handler:
    """Pages behind the sign-in: without a live session a GET goes to the sign-in page, anything else
    gets 401; a signed-in request carries its Editor as request[EDITOR]. Checked before any work."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        editor = await current_editor(request)
        if editor is None:
            if request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(request.app.router[SIGN_IN].url_for())
            raise web.HTTPUnauthorized(text="sign in first\n")
        request[EDITOR] = editor
        if request.method not in ("GET", "HEAD"):
            request.app[FORM_GUARD].check(request, await read_form(request))
        return await handler(request)

    return wrapper


async def sign_in_page(request: web.Request) -> web.Response:
    if await current_editor(request) is not None:
        raise web.HTTPSeeOther(request.app.router[HOME].url_for())
    return render(request, "sign_in.html.j2", error="", name="")


async def sign_in(request: web.Request) -> web.Response:
    state = request.app[CONSOLE]
    form = await read_form(request)
    request.app[FORM_GUARD].check(request, form)
    name = str(form.get("name", ""))[:MAX_NAME_CHARS].strip()
    password = str(form.get("password", ""))
    address = request.remote or "unknown"
    wait = max(state.failures_by_name.retry_after(name), state.failures_by_address.retry_after(address))
    if wait:
        raise TooManyRequests(f"too many wrong passwords; try again in {int(wait) + 1} s", wait)
    # No stored name has a control character (check_editor_name), and PostgreSQL refuses a NUL in a query.
    editor = await state.editors.get(name) if name and name.isprintable() else None
    if not password_matches(editor.password_hash if editor else None, password) or editor is None:
        state.failures_by_name.add(name)
        state.failures_by_address.add(address)
        return render(request, "sign_in.html.j2", status=401, error="名字或密码不对。", name=name)
    if needs_rehash(editor.password_hash):
        await state.editors.set_password(editor.name, hash_password(password))
    old = request.cookies.get(COOKIE)
    if old:
        await state.editors.end_session(old)
    token = secrets.token_urlsafe(32)
    await state.editors.start_session(editor, token, dt.timedelta(hours=SESSION_HOURS))
    response = web.HTTPSeeOther(request.app.router[HOME].url_for())
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_HOURS * 3600,
        path="/console",
        httponly=True,
        secure=state.secure_cookie,
        samesite="Lax",
    )
    raise response


@require_editor
async def sign_out(request: web.Request) -> web.Response:
    await request.app[CONSOLE].editors.end_session(request.cookies.get(COOKIE, ""))
    response = web.HTTPSeeOther(request.app.router[SIGN_IN].url_for())
    response.del_cookie(COOKIE, path="/console")
    raise response
