"""The public site: health, readiness and metrics, the issue archive every channel links to, its search
page and its Atom feed.

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

from bot.archive import issue_view, item_anchor
from bot.broadcast.audience import found_in, mentions
from bot.csrf import FORM_GUARD
from bot.errors import route_template
from bot.rendering import WEB
from bot.services import SERVICES, Services
from bot.site_search import highlighted, paging, wants_html
from channels.base import TEMPLATE_DIR
from channels.email.channel import EMAIL
from channels.links import RewrittenLink
from content.errors import BadInput, NotFound
from content.model import Issue
from storage.database import Database
from storage.issues import IssueSummary
from storage.migrate import current_revision, head_revision, known_revisions
from storage.search.results import CACHED_QUERY_CHARS, MAX_LIMIT, MAX_OFFSET, SearchHit

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
# Which section of an issue a search hit is in, by number (its anchor): issue date -> (content hash,
# section name -> number). Hits carry the section's name only, and an issue is read once per version.
SECTION_NUMBERS = web.AppKey("section_numbers", dict[dt.date, tuple[str, dict[str, int]]])
# The feed's view of an issue (its lead as plain text), per issue version: the feed is polled far more
# often than issues change. Date -> (content hash, lead).
FEED_LEADS = web.AppKey("feed_leads", dict[dt.date, tuple[str, str]])
# Whether an issue is about a topic, by (topic, date, content hash): the broadcast's rule (the topic
# written in the issue, or found by the search), with the search asked once per topic of the archive's
# index (audience.found_in), not of a one-issue index per issue (~0.25 s and ~25 MB each).
FEED_TOPICS = web.AppKey("feed_topics", FIFOCache[tuple[str, dt.date, str], bool])
FEED_TOPIC_DECISIONS = 65_536
# The issues the search finds a topic in, by (index generation, topic).
FEED_TOPIC_DATES = web.AppKey("feed_topic_dates", FIFOCache[tuple[int, str], frozenset[dt.date]])
FEED_TOPIC_SEARCHES = 4096
SEARCH_LIMIT = 10  # results per page when the client names no limit
# A topic as readers choose one: a word or two, never a sentence.
MAX_TOPIC_CHARS = 32
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
SEARCH = "search"
STATIC = "static"
# The sign-up form posts here (bot/subscriptions.py adds the route).
SUBSCRIBE = "subscribe"


def setup(app: web.Application) -> None:
    app[SEARCH_BODIES] = FIFOCache(maxsize=SEARCH_BODY_CACHE)
    app[WEB_LINKS_STORED] = {}
    app[SECTION_NUMBERS] = {}
    app[FEED_LEADS] = {}
    app[FEED_TOPICS] = FIFOCache(maxsize=FEED_TOPIC_DECISIONS)
    app[FEED_TOPIC_DATES] = FIFOCache(maxsize=FEED_TOPIC_SEARCHES)
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
    router.add_get("/search", search, name=SEARCH)
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
        search_url=str(router[SEARCH].url_for()),
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
    document = services.renderer.document(issue, WEB)
    view = issue_view(issue, document, services.renderer.policy(WEB))
    await _remember_web_links(request, issue, (*document.links, *view.links))
    signup = services.channel_status.get(EMAIL.name) == ""
    # The sign-up form's CSRF field and its cookie (bot/csrf.py), only where the form is shown.
    form_token = request.app[FORM_GUARD].offer(request) if signup else None
    template = request.app[TEMPLATES].get_template("issue.html.j2")
    html = template.render(
        document=document,
        sections=view.sections,
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


async def _remember_web_links(request: web.Request, issue: Issue, links: tuple[RewrittenLink, ...]) -> None:
    """Store the page's tracking links (with JIANBAO_TRACK_LINKS), so that its /r/ links redirect."""
    stored = request.app[WEB_LINKS_STORED]
    if stored.get(issue.date) == issue.content_hash:
        return
    tracked = list(dict.fromkeys((link.token, link.original) for link in links if link.token))
    if tracked:
        await _services(request).links.remember("web", issue.date, tracked)
    stored[issue.date] = issue.content_hash


async def search(request: web.Request) -> web.Response:
    """GET /search?q=量化&limit=10&offset=0: the keyword search, as JSON for API clients and as the
    archive's search page for browsers (bot/site_search.py decides which)."""
    services = _services(request)
    query = _single(request, "q") or ""
    limit = _whole_number(request, "limit", default=SEARCH_LIMIT, low=1, high=MAX_LIMIT)
    offset = _whole_number(request, "offset", default=0, low=0, high=MAX_OFFSET)
    html = wants_html(request, _single(request, "format"))
    services.metrics.searches.labels("web").inc()
    if html:
        response = await _search_page(request, query, limit, offset)
    else:
        response = web.Response(
            body=_search_json(request, query, limit, offset), content_type="application/json", charset="utf-8"
        )
    response.headers["Vary"] = "Accept"  # one URL, two forms: a cache must keep them apart
    return response


def _search_json(request: web.Request, query: str, limit: int, offset: int) -> bytes:
    services = _services(request)
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
    return body


async def _search_page(request: web.Request, query: str, limit: int, offset: int) -> web.Response:
    template = request.app[TEMPLATES].get_template("search.html.j2")
    if not query.strip():  # the box alone, without the hint an API client gets
        return web.Response(text=template.render(query=query, results=None), content_type="text/html")
    result = _services(request).search.search(query, limit=limit, offset=offset)
    results = [
        {
            "title": highlighted(hit.title, hit.matched, query),
            "snippet": highlighted(hit.snippet, hit.matched, query),
            "url": await _hit_url(request, hit),
            "date": hit.date.isoformat(),
            "section": hit.section,
        }
        for hit in result.hits
    ]
    pages = paging(
        request.app.router[SEARCH].url_for(),
        query,
        limit=limit,
        offset=offset,
        shown=len(results),
        total=result.total,
        default_limit=SEARCH_LIMIT,
        furthest=MAX_OFFSET,
    )
    html = template.render(query=query, results=results, total=result.total, hint=result.hint, pages=pages)
    return web.Response(text=html, content_type="text/html")


async def _hit_url(request: web.Request, hit: SearchHit) -> str:
    """The item on its issue page: /issues/2020-07-02#item-2-1 (the issue's page when the section is
    gone, as when the issue changed since it was indexed)."""
    page = issue_url(request.app, hit.date)
    number = (await _section_numbers(request, hit.date)).get(hit.section)
    return str(page.with_fragment(item_anchor(number, hit.position))) if number else str(page)


async def _section_numbers(request: web.Request, date: dt.date) -> dict[str, int]:
    known = request.app[SECTION_NUMBERS]
    version = _services(request).search.indexed.get(date, "")
    cached = known.get(date)
    if cached is not None and cached[0] == version:
        return cached[1]
    issue = await _services(request).storage.issues.get(date)
    numbers: dict[str, int] = {}
    for number, section in enumerate(issue.sections if issue else (), 1):
        numbers.setdefault(section.name, number)  # the first of a repeated name, as section_url does
    known[date] = (version, numbers)
    return numbers


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
    """GET /feed.xml[?topic=量化]: the newest issues as Atom; with a topic, only the issues about it, by
    the rule a broadcast applies to a reader who chose that topic (bot/broadcast/audience.py)."""
    services = _services(request)
    topic = _topic(request)
    entries: list[tuple[IssueSummary, str]] = []
    for summary in await services.storage.issues.list():
        if len(entries) == FEED_ENTRIES:
            break
        issue = None
        if topic is not None:
            about, issue = await _about(request, summary, topic)
            if not about:
                continue
        entries.append((summary, await _feed_lead(request, summary, issue)))
    # Atom wants absolute links: without a public URL, the address this request came to.
    base = services.settings.public_url or f"{request.scheme}://{request.host}"
    router = request.app.router
    archive_url = absolute_url(base, router[ARCHIVE].url_for())
    self_path = router[FEED].url_for()
    if topic is not None:
        self_path = self_path.with_query(topic=topic)
    # A topic's feed is a feed of its own to a reader: its own id, so a reader can follow several.
    feed_id = absolute_url(base, self_path) if topic is not None else archive_url
    xml = (
        request.app[TEMPLATES]
        .get_template("feed.xml.j2")
        .render(
            topic=topic,
            archive_url=archive_url,
            feed_id=feed_id,
            self_url=absolute_url(base, self_path),
            updated=_atom_date(entries[0][0].date) if entries else _EPOCH.isoformat(),
            entries=[
                (
                    summary,
                    absolute_url(base, issue_url(request.app, summary.date)),
                    _atom_date(summary.date),
                    lead,
                )
                for summary, lead in entries
            ],
        )
    )
    return web.Response(text=xml, content_type="application/atom+xml")


FEED_ENTRIES = 20
# An empty feed's <updated>: Atom requires one.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _atom_date(date: dt.date) -> str:
    """An issue's date as Atom's date-time: the issue is of that day, so its midnight (UTC)."""
    return dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC).isoformat()


def _topic(request: web.Request) -> str | None:
    topic = _single(request, "topic")
    if topic is None:
        return None
    topic = topic.strip()
    if not topic or len(topic) > MAX_TOPIC_CHARS or not topic.isprintable():
        raise BadInput(f"topic must be 1 to {MAX_TOPIC_CHARS} printable characters")
    return topic


async def _about(request: web.Request, summary: IssueSummary, topic: str) -> tuple[bool, Issue | None]:
    """Whether the issue is about `topic` (and the issue, when it had to be read to decide)."""
    decided = request.app[FEED_TOPICS]
    key = (topic, summary.date, summary.content_hash)
    if key in decided:
        return decided[key], None
    services = _services(request)
    searched = request.app[FEED_TOPIC_DATES]
    found = searched.get((services.search.generation, topic))
    if found is None:
        found = searched[(services.search.generation, topic)] = found_in(services.search, topic)
    if summary.date in found:
        decided[key] = True
        return True, None
    issue = await services.storage.issues.get(summary.date)
    if issue is None:  # deleted since the list was read
        return False, None
    decided[key] = about = mentions(issue, topic)
    return about, issue


async def _feed_lead(request: web.Request, summary: IssueSummary, issue: Issue | None) -> str:
    leads = request.app[FEED_LEADS]
    cached = leads.get(summary.date)
    if cached is not None and cached[0] == summary.content_hash:
        return cached[1]
    if issue is None:
        issue = await _services(request).storage.issues.get(summary.date)
    lead = (_services(request).renderer.document(issue, WEB).lead or "") if issue else ""
    leads[summary.date] = (summary.content_hash, lead)
    return lead
