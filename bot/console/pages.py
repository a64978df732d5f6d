"""The console's pages behind the sign-in (more arrive with the console's other parts)."""

from __future__ import annotations

from aiohttp import web

from bot.console.auth import HOME, render, require_editor
from bot.services import SERVICES
from bot.site import issue_url

RECENT_ISSUES = 20


def setup(app: web.Application) -> None:
    app.router.add_get("/console", home, name=HOME)


@require_editor
async def home(request: web.Request) -> web.Response:
    summaries = (await request.app[SERVICES].storage.issues.list())[:RECENT_ISSUES]
    issues = [(summary, str(issue_url(request.app, summary.date))) for summary in summaries]
    return render(request, "home.html.j2", issues=issues)
