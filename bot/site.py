"""The public site: health and metrics, the issue archive every channel links to, and its Atom feed."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from bot.app import SERVICES, Services
from channels.base import TEMPLATE_DIR
from channels.document import IssueDocument
from channels.fitting import non_empty
from content.errors import BadInput, NotFound
from storage.search.results import CACHED_QUERY_CHARS

SITE_TEMPLATES = TEMPLATE_DIR / "site"
TEMPLATES = web.AppKey("site_templates", Environment)
# Encoded answers of GET /search, keyed by the index generation: popular words cost a dict lookup.
SEARCH_BODIES = web.AppKey("search_bodies", dict[tuple[int, str, int, int], bytes])
SEARCH_BODY_CACHE = 1024


def setup(app: web.Application) -> None:
    app[SEARCH_BODIES] = {}
    app[TEMPLATES] = Environment(
        loader=FileSystemLoader(SITE_TEMPLATES),
        autoescape=select_autoescape(["html", "xml", "j2"]),
        undefined=StrictUndefined,
    )
    app.middlewares.insert(0, _measure)  # outermost: it sees the responses the error middleware made
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", home)
    app.router.add_get("/issues", archive)
    app.router.add_get("/issues/{date}", issue_page)
    app.router.add_get("/feed.xml", feed)
    app.router.add_get("/search", search)


async def home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/issues")


@web.middleware
async def _measure(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unknown"
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
        }
    )


def _channels(services: Services) -> dict[str, str]:
    return {name: reason or "on" for name, reason in services.channel_status.items()}


async def metrics(request: web.Request) -> web.Response:
    body = _services(request).metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def archive(request: web.Request) -> web.Response:
    summaries = await _services(request).storage.issues.list()
    html = request.app[TEMPLATES].get_template("issues.html.j2").render(issues=summaries)
    return web.Response(text=html, content_type="text/html")


async def issue_page(request: web.Request) -> web.Response:
    services = _services(request)
    try:
        date = dt.date.fromisoformat(request.match_info["date"])
    except ValueError:
        raise NotFound(f"no issue dated {request.match_info['date'][:20]!r}") from None
    issue = await services.storage.issues.get(date)
    if issue is None:
        raise NotFound(f"no issue dated {date}")
    document = services.renderer.document(issue, "web")
    signup = services.channel_status.get("email") == ""
    template = request.app[TEMPLATES].get_template("issue.html.j2")
    html = template.render(document=document, sections=_numbered(document), subscribe=signup)
    return web.Response(text=html, content_type="text/html")


def _numbered(document: IssueDocument) -> list[tuple[int, object]]:
    """Sections with the 1-based position `IssueDocument.section_url` uses as its anchor."""
    shown = set(id(section) for section in non_empty(document.sections))
    return [
        (position, section) for position, section in enumerate(document.sections, 1) if id(section) in shown
    ]


async def search(request: web.Request) -> web.Response:
    """GET /search?q=量化&limit=10&offset=0: the keyword search as JSON (the archive's search box)."""
    services = _services(request)
    try:
        limit = int(request.query.get("limit", "10"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise BadInput("limit and offset must be whole numbers") from None
    services.metrics.searches.labels("web").inc()
    query = request.query.get("q", "")
    bodies = request.app[SEARCH_BODIES]
    key = (services.search.generation, query, limit, offset)
    body = bodies.get(key)
    if body is None:
        result = services.search.search(query, limit=limit, offset=offset)
        body = json.dumps(result.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        if len(query) <= CACHED_QUERY_CHARS:
            bodies[key] = body
            if len(bodies) > SEARCH_BODY_CACHE:
                bodies.pop(next(iter(bodies)))  # oldest first; entries of an old generation age out
    return web.Response(body=body, content_type="application/json", charset="utf-8")


async def feed(request: web.Request) -> web.Response:
    services = _services(request)
    summaries = (await services.storage.issues.list())[:FEED_ENTRIES]
    base = services.settings.public_url or f"{request.scheme}://{request.host}"
    xml = request.app[TEMPLATES].get_template("feed.xml.j2").render(issues=summaries, base=base.rstrip("/"))
    return web.Response(text=xml, content_type="application/atom+xml")


FEED_ENTRIES = 20
