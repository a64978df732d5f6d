"""The public site: health, readiness and metrics, the issue archive every channel links to, and its
Atom feed.

Routes have names (ARCHIVE, ISSUE_PAGE...), and the service's own links are built from them with
`url_for`, never spelled out again: `absolute_url` puts JIANBAO_PUBLIC_URL in front where a link leaves
the site (a mail, a chat message, the feed). Renderers that run without an app (channels/links.py) still
write `/issues/{date}` and `/r/{token}` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from cachetools import FIFOCache
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.exc import DBAPIError
from yarl import URL

from bot.csrf import FORM_GUARD
from bot.errors import route_template
from bot.services import SERVICES, Services
from channels.base import TEMPLATE_DIR
from channels.document import IssueDocument
from channels.email.channel import EMAIL
from channels.fitting import non_empty
from content.errors import BadInput, NotFound
from content.model import Issue
from storage.database import Database
from storage.migrate import current_revision, head_revision, known_revisions
from storage.search.results import CACHED_QUERY_CHARS, MAX_LIMIT, MAX_OFFSET

log = logging.getLogger(__name__)

SITE_TEMPLATES = TEMPLATE_DIR / "site"
# How long /readyz waits for the database. Probes give up after a few seconds (compose's after 5): a
# database slower than this is as good as down for the requests the probe stands for.
READY_TIMEOUT_SECONDS = 2.0
TEMPLATES = web.AppKey("site_templates", Environment)
# Encoded answers of GET /search, keyed by the index generation: popular words cost a dict lookup. Oldest
# first out, so entries of an old generation age out.
SEARCH_BODIES = web.AppKey("search_bodies", FIFOCache[tuple[int, str, int, int], bytes])
SEARCH_BODY_CACHE = 1024
# The archive pages' tracking links (channel "web") are stored once per issue version and process, not on
# every view: issue date -> the content hash whose links are stored. Only stored issues get here, so it
# holds at most one entry per issue.
WEB_LINKS_STORED = web.AppKey("web_links_stored", dict[dt.date, str])
# /issues/{date} answers the one spelling its links use: fromisoformat alone would also take 20200702
# and 2020-W27-4, the same page under other addresses.
_ISSUE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A number in a query string: ASCII digits only (int() also takes "+5", " 5", "1_000" and "５"), and
# few of them, so a 5,000-digit string costs nothing to refuse.
_DIGITS = re.compile(r"[0-9]{1,6}")
# Route names: request.app.router[ARCHIVE].url_for() is the archive's path.
ARCHIVE = "archive"
ISSUE_PAGE = "issue_page"
FEED = "feed"
STATIC = "static"
# The sign-up form posts here (bot/subscriptions.py adds the route).
SUBSCRIBE = "subscribe"


def setup(app: web.Application) -> None:
    app[SEARCH_BODIES] = FIFOCache(maxsize=SEARCH_BODY_CACHE)
    app[WEB_LINKS_STORED] = {}
    app[READINESS] = Readiness(expected=head_revision(), known=known_revisions())
    app.middlewares.insert(0, _measure)  # outermost: it sees the responses the error middleware made
    router = app.router
    router.add_get("/healthz", healthz, name="healthz")
    router.add_get("/readyz", readyz, name="readyz")
    router.add_get("/metrics", metrics, name="metrics")
    router.add_get("/", home, name="home")
    router.add_get("/issues", archive, name=ARCHIVE)
    router.add_get("/issues/{date}", issue_page, name=ISSUE_PAGE)
    router.add_get("/feed.xml", feed, name=FEED)
    router.add_get("/search", search, name="search")
    # The style sheet (and later other assets) as files, so the pages' CSP can forbid inline code.
    router.add_static("/static/", SITE_TEMPLATES / "static", name=STATIC)
    templates = Environment(
        loader=FileSystemLoader(SITE_TEMPLATES),
        autoescape=select_autoescape(["html", "xml", "j2"]),
        undefined=StrictUndefined,
    )
    # What every page links to (base.html.j2), the same on every page: built once.
    templates.globals.update(
        archive_url=str(router[ARCHIVE].url_for()),
        feed_url=str(router[FEED].url_for()),
        stylesheet_url=str(router[STATIC].url_for(filename="site.css")),
    )
    app[TEMPLATES] = templates


def absolute_url(public_url: str, path: URL) -> str:
    """A path of ours (from `url_for`) under JIANBAO_PUBLIC_URL, which may itself end in a path
    (https://example.com/jianbao): appended to it, not resolved against it."""
    return public_url.rstrip("/") + str(path)


def issue_url(app: web.Application, date: dt.date) -> URL:
    return app.router[ISSUE_PAGE].url_for(date=date.isoformat())


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.app.router[ARCHIVE].url_for())


@web.middleware
async def _measure(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    route = route_template(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        services = request.app.get(SERVICES)
        if services is not None:
            services.metrics.requests.labels(route, str(status)).inc()
            services.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


async def healthz(request: web.Request) -> web.Response:
    """Liveness for load balancers: answered from memory, so a slow database does not fail it."""
    services = _services(request)
    return web.json_response(
        {
            "status": "ok",
            "issues": len(services.search.indexed),
            "items": services.search.size,
            "channels": _channels(services),
            "sending": {name: reason or "on" for name, reason in services.sending_status.items()},
        }
    )


@dataclass
class Readiness:
    """What /readyz compares the database with: the migrations this code ships, read from their scripts
    once at start. And the last reason it gave, so that an outage is logged once, not at every probe."""

    expected: str | None  # the head revision
    known: frozenset[str]
    reported: str = ""

    def schema_problem(self, current: str | None) -> str:
        """Why a database at revision `current` does not suit this code ("" when it does)."""
        if current == self.expected:
            return ""
        if current is None or current in self.known:
            return f"migrations behind: at {current or 'none'}, code expects {self.expected}"
        return f"migrations ahead: at {current}, which this code does not know; it expects {self.expected}"


READINESS = web.AppKey("readiness", Readiness)


async def readyz(request: web.Request) -> web.Response:
    """Readiness for load balancers and orchestrators: 200 while the database answers within
    READY_TIMEOUT_SECONDS at the schema this code expects, else 503 with the reason. Unlike /healthz it
    asks the database: take an instance out of rotation on it, but do not restart one for it."""
    readiness = request.app[READINESS]
    problem, detail = await _problem(readiness, _services(request).storage.database)
    if problem != readiness.reported:
        if problem:
            log.warning("not ready: %s", detail)
        else:
            log.info("ready again")
        readiness.reported = problem
    if problem:
        return web.json_response({"status": "not ready", "reason": problem}, status=503)
    return web.json_response({"status": "ready"})


async def _problem(readiness: Readiness, database: Database) -> tuple[str, str]:
    """(the reason the client gets, "" when ready; the same for the log, with the driver's own words)."""
    unreachable = "database unreachable"
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), database.engine.connect() as connection:
            current = await connection.run_sync(current_revision)
    except TimeoutError:  # caught before OSError, of which it is a subclass
        return unreachable, f"{unreachable}: no answer within {READY_TIMEOUT_SECONDS:.0f} s"
    except (OSError, DBAPIError) as error:
        # Only the log gets the driver's message: it may name the database's hosts and users.
        words = str(error).strip().splitlines()
        return unreachable, f"{unreachable}: {words[0] if words else type(error).__name__}"
    problem = readiness.schema_problem(current)
    return problem, problem


def _channels(services: Services) -> dict[str, str]:
    return {name: reason or "on" for name, reason in services.channel_status.items()}


async def metrics(request: web.Request) -> web.Response:
    body = _services(request).metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def archive(request: web.Request) -> web.Response:
    summaries = await _services(request).storage.issues.list()
    issues = [(summary, str(issue_url(request.app, summary.date))) for summary in summaries]
    html = request.app[TEMPLATES].get_template("issues.html.j2").render(issues=issues)
    return web.Response(text=html, content_type="text/html")


async def issue_page(request: web.Request) -> web.Response:
    services = _services(request)
    date = _issue_date(request.match_info["date"])
    issue = await services.storage.issues.get(date)
    if issue is None:
        raise NotFound(f"no issue dated {date}")
    document = services.renderer.document(issue, "web")
    await _remember_web_links(request, issue, document)
    signup = services.channel_status.get(EMAIL.name) == ""
    # The sign-up form's CSRF field and its cookie (bot/csrf.py), only where the form is shown.
    form_token = request.app[FORM_GUARD].offer(request) if signup else None
    template = request.app[TEMPLATES].get_template("issue.html.j2")
    html = template.render(
        document=document,
        sections=_numbered(document),
        subscribe_url=str(request.app.router[SUBSCRIBE].url_for()) if signup else "",
        csrf_field=form_token.field if form_token else "",
    )
    response = web.Response(text=html, content_type="text/html")
    if form_token:
        form_token.set_cookie(response)
    return response


def _issue_date(text: str) -> dt.date:
    if _ISSUE_DATE.fullmatch(text):
        with contextlib.suppress(ValueError):  # 2020-02-30, 0000-01-01
            return dt.date.fromisoformat(text)
    raise NotFound(f"no issue dated {text[:20]!r}")


async def _remember_web_links(request: web.Request, issue: Issue, document: IssueDocument) -> None:
    """Store the page's tracking links (with JIANBAO_TRACK_LINKS), so that its /r/ links redirect."""
    stored = request.app[WEB_LINKS_STORED]
    if stored.get(issue.date) == issue.content_hash:
        return
    tracked = [(link.token, link.original) for link in document.links if link.token]
    if tracked:
        await _services(request).links.remember("web", issue.date, tracked)
    stored[issue.date] = issue.content_hash


def _numbered(document: IssueDocument) -> list[tuple[int, object]]:
    """Sections with the 1-based position `IssueDocument.section_url` uses as its anchor."""
    shown = set(id(section) for section in non_empty(document.sections))
    return [
        (position, section) for position, section in enumerate(document.sections, 1) if id(section) in shown
    ]


async def search(request: web.Request) -> web.Response:
    """GET /search?q=量化&limit=10&offset=0: the keyword search as JSON (the archive's search box)."""
    services = _services(request)
    query = _single(request, "q") or ""
    limit = _whole_number(request, "limit", default=10, low=1, high=MAX_LIMIT)
    offset = _whole_number(request, "offset", default=0, low=0, high=MAX_OFFSET)
    services.metrics.searches.labels("web").inc()
    bodies = request.app[SEARCH_BODIES]
    key = (services.search.generation, query, limit, offset)
    try:
        body: bytes | None = bodies[key]  # a hit: one lookup (get() would look twice)
    except KeyError:
        body = None
    if body is None:
        result = services.search.search(query, limit=limit, offset=offset)
        body = json.dumps(result.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        if len(query) <= CACHED_QUERY_CHARS:
            bodies[key] = body
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _single(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (which of two values a client meant is anyone's guess)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadInput(f"{name} must be given once, not {len(values)} times")
    return values[0] if values else None


def _whole_number(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    """A numeric query parameter within low..high: anything else is refused before it reaches the index."""
    text = _single(request, name)
    if text is None:
        return default
    if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
        raise BadInput(f"{name} must be a whole number from {low} to {high}")
    return int(text)


async def feed(request: web.Request) -> web.Response:
    services = _services(request)
    summaries = (await services.storage.issues.list())[:FEED_ENTRIES]
    # Atom wants absolute links: without a public URL, the address this request came to.
    base = services.settings.public_url or f"{request.scheme}://{request.host}"
    router = request.app.router
    xml = (
        request.app[TEMPLATES]
        .get_template("feed.xml.j2")
        .render(
            archive_url=absolute_url(base, router[ARCHIVE].url_for()),
            self_url=absolute_url(base, router[FEED].url_for()),
            updated=(summaries[0].updated_at if summaries else _EPOCH).isoformat(),
            entries=[
                (summary, absolute_url(base, issue_url(request.app, summary.date))) for summary in summaries
            ],
        )
    )
    return web.Response(text=xml, content_type="application/atom+xml")


FEED_ENTRIES = 20
# An empty feed's <updated>: Atom requires one.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
