"""The console's home (recent issues, what a Git push brought in that nobody has looked at yet, recent
broadcasts) and the audit trail page."""

from __future__ import annotations

from aiohttp import web

from bot.console.auth import HOME, render, require_editor
from bot.console.broadcasts import BROADCAST, BROADCASTS, broadcast_control
from bot.console.issues import ISSUE, ISSUE_NEW, audit
from bot.services import SERVICES
from storage.audit import PAGE, issue_subject

RECENT_ISSUES = 20
RECENT_BROADCASTS = 5
AUDIT = "console_audit"
# Recent entries read to tell which pushed issues are still new (unpreviewed).
NEW_WINDOW = 200


def setup(app: web.Application) -> None:
    app.router.add_get("/console", home, name=HOME)
    app.router.add_get("/console/audit", audit_page, name=AUDIT)


@require_editor
async def home(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    router = request.app.router
    summaries = (await services.storage.issues.list())[:RECENT_ISSUES]
    new = await _unseen_pushes(request)
    issues = [
        (summary, router[ISSUE].url_for(date=summary.date.isoformat()), issue_subject(summary.date) in new)
        for summary in summaries
    ]
    broadcasts = await broadcast_control(request).broadcasts.list(RECENT_BROADCASTS)
    return render(
        request,
        "home.html.j2",
        issues=issues,
        new_issue_url=router[ISSUE_NEW].url_for(),
        broadcasts=[(broadcast, router[BROADCAST].url_for(id=str(broadcast.id))) for broadcast in broadcasts],
        broadcasts_url=router[BROADCASTS].url_for(),
        audit_url=router[AUDIT].url_for(),
    )


async def _unseen_pushes(request: web.Request) -> set[str]:
    """Subjects of issues a Git push imported after anyone last previewed them: "marked new"."""
    unseen: set[str] = set()
    seen: set[str] = set()
    for entry in await audit(request).recent(NEW_WINDOW):  # newest first
        if entry.action == "preview":
            seen.add(entry.subject)
        elif entry.action == "import" and entry.actor == "git push" and entry.subject not in seen:
            unseen.add(entry.subject)
    return unseen


@require_editor
async def audit_page(request: web.Request) -> web.Response:
    raw = request.query.get("before", "")
    before = int(raw) if raw.isdigit() and len(raw) < 10 else None
    entries = await audit(request).recent(PAGE, before=before)
    older = (
        request.app.router[AUDIT].url_for().with_query(before=str(entries[-1].id))
        if len(entries) == PAGE
        else None
    )
    return render(request, "audit.html.j2", entries=entries, older_url=older)
