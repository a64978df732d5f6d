"""The subscriber desk: find subscribers, look at one, change their status or topics, erase them.

    GET  /console/subscribers                  search by address (prefix, or anywhere), channel, status
                                               and topic; keyset pages by id ("下一页" carries the last id)
    GET  /console/subscribers/{id}             one subscriber: times, deliveries, clicks (when kept: JIANBAO_
                                               TRACK_SUBSCRIBERS), what editors did, forms
    POST /console/subscribers/{id}/status      set their status (one of SubscriberStatus)
    POST /console/subscribers/{id}/topics      replace their topics, through the readers' vocabulary
                                               (bot/topics.py): the page says what it took, refused and
                                               suggested, and the cap
    POST /console/subscribers/{id}/erase       erase them completely; only with the confirm box ticked

Subscribers are named by id in URLs and in the audit trail, never by address: an erasure (storage's
SubscriberStore.erase_id) cuts the address out of the database, and a URL or audit line holding it would be
one more copy to find. Bad input gets the page again with one line saying why.

Topics mean for an editor what they mean for the reader (bot/topics.py `TopicVocabulary.choose`): a topic the
subscriber has stays as stored, any other word is taken only as the vocabulary understands it (量化 for
"quantization"), so an editor cannot give a reader, or a WeCom/Feishu group robot, a topic no issue will
ever match.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from bot.console.auth import EDITOR, render, require_editor
from bot.console.issues import audit
from bot.preferences import topic_lines
from bot.services import SERVICES
from bot.topics import split_words
from content.errors import BadInput, JianbaoError, NotFound
from storage.audit import subscriber_subject
from storage.subscribers import (
    MAX_TOPIC_LENGTH,
    MAX_TOPICS,
    Subscriber,
    SubscriberPage,
    SubscriberStatus,
    SubscriberStore,
)
from storage.tables import MAX_ADDRESS_LENGTH

SUBSCRIBERS = "console_subscribers"
SUBSCRIBER = "console_subscriber"
CHANGE = "console_subscriber_change"
PAGE = 50
# The newest audit entries shown on a subscriber's page.
RECENT_ENTRIES = 20
# The topics field: every topic at its longest, with a separator after each.
MAX_TOPICS_CHARS = MAX_TOPICS * (MAX_TOPIC_LENGTH + 1)
MAX_ID_DIGITS = 9
CONFIRMED = "yes"
STATUSES = tuple(status.value for status in SubscriberStatus)


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/console/subscribers", search_page, name=SUBSCRIBERS)
    router.add_get("/console/subscribers/{id}", subscriber_page, name=SUBSCRIBER)
    router.add_post("/console/subscribers/{id}/{verb}", change, name=CHANGE)


def _store(request: web.Request) -> SubscriberStore:
    return request.app[SERVICES].subscribers


# --- search -------------------------------------------------------------------------------------------


@require_editor
async def search_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    query = request.query
    q = query.get("q", "").strip()[:MAX_ADDRESS_LENGTH]
    contains = query.get("match") == "contains"
    channel = query.get("channel", "")
    status = query.get("status", "")
    topic = query.get("topic", "").strip()[:MAX_TOPIC_LENGTH]
    erased = query.get("erased", "")
    values = {"q": q, "contains": contains, "channel": channel, "status_filter": status, "topic": topic}
    error = ""
    page = SubscriberPage((), None)
    try:
        if channel and channel not in services.channels:
            raise BadInput(f"no channel {channel[:20]!r}: choose one of {', '.join(services.channels.names)}")
        if status and status not in STATUSES:
            raise BadInput(f"status must be one of {', '.join(STATUSES)}")
        page = await _store(request).search(
            q,
            channel=channel or None,
            status=SubscriberStatus(status) if status else None,
            topic=topic or None,
            contains=contains,
            after_id=_after(query.get("after", "")),
            limit=PAGE,
        )
    except JianbaoError as failure:
        error = failure.message
    router = request.app.router
    next_url: URL | None = None
    if page.next_after_id is not None:
        given = {"q": q, "channel": channel, "status": status, "topic": topic}
        kept = {name: value for name, value in given.items() if value}
        kept["match"] = "contains" if contains else "prefix"
        next_url = router[SUBSCRIBERS].url_for().with_query({**kept, "after": str(page.next_after_id)})
    return render(
        request,
        "subscribers.html.j2",
        status=400 if error else 200,
        error=error,
        notice=f"订阅者 #{erased} 已彻底删除。" if erased.isdigit() and len(erased) <= MAX_ID_DIGITS else "",
        channels=[(channel.name, channel.label) for channel in services.channels],
        statuses=STATUSES,
        rows=[(row, router[SUBSCRIBER].url_for(id=str(row.id))) for row in page.subscribers],
        next_url=next_url,
        action=router[SUBSCRIBERS].url_for(),
        # The desk's file pages (bot/console/subscriber_files.py) by route name: it imports this module.
        import_url=router["console_subscribers_import"].url_for(),
        export_url=router["console_subscribers_export"].url_for(),
        **values,
    )


def _after(raw: str) -> int:
    if not raw:
        return 0
    if not raw.isdigit() or len(raw) > MAX_ID_DIGITS:
        raise BadInput("the page key must be a subscriber id")
    return int(raw)


# --- one subscriber -----------------------------------------------------------------------------------


@require_editor
async def subscriber_page(request: web.Request) -> web.Response:
    return await _subscriber_page(request, error="")


async def _subscriber_page(
    request: web.Request, *, error: str, status: int = 200, notice: tuple[str, ...] = ()
) -> web.Response:
    subscriber_id = _id(request)
    history = await _store(request).history(subscriber_id)
    if history is None:
        raise NotFound(f"no subscriber with id {subscriber_id}")
    entries = await audit(request).recent(RECENT_ENTRIES, subjects=(subscriber_subject(subscriber_id),))
    channels = request.app[SERVICES].channels
    name = history.subscriber.channel
    return render(
        request,
        "subscriber.html.j2",
        status=status,
        error=error,
        notice=notice,
        history=history,
        row=history.subscriber,
        channel_label=channels.get(name).label if name in channels else name,
        statuses=STATUSES,
        entries=entries,
        track_subscribers=request.app[SERVICES].settings.track_subscribers,
        change_url=lambda verb: request.app.router[CHANGE].url_for(id=str(subscriber_id), verb=verb),
        search_url=request.app.router[SUBSCRIBERS].url_for(),
        max_topics_chars=MAX_TOPICS_CHARS,
    )


@require_editor
async def change(request: web.Request) -> web.Response:
    verb = request.match_info["verb"]
    if verb not in ("status", "topics", "erase"):
        raise NotFound(f"no action {verb[:20]!r} (status, topics or erase)")
    subscriber_id = _id(request)
    row = await _store(request).get_by_id(subscriber_id)
    if row is None:
        raise NotFound(f"no subscriber with id {subscriber_id}")
    form = await request.post()
    editor = request[EDITOR].name
    try:
        if verb == "erase":
            if form.get("confirm") != CONFIRMED:
                raise BadInput("tick the box to confirm: erasing cannot be undone")
            await _store(request).erase_id(subscriber_id, actor=editor)  # it records the erasure itself
            done = request.app.router[SUBSCRIBERS].url_for().with_query(erased=str(subscriber_id))
            raise web.HTTPSeeOther(done)
        notice: tuple[str, ...] = ()
        if verb == "status":
            detail = await _set_status(request, row, form.get(verb))
        else:
            detail, notice = await _set_topics(request, row, form.get(verb))
    except JianbaoError as failure:
        return await _subscriber_page(request, error=failure.message, status=failure.status)
    if detail:
        await audit(request).record(editor, verb, subscriber_subject(subscriber_id), detail)
    if notice:  # what the vocabulary said is for this answer only: the page, not a redirect
        return await _subscriber_page(request, error="", notice=notice)
    raise web.HTTPSeeOther(request.app.router[SUBSCRIBER].url_for(id=str(subscriber_id)))


async def _set_status(request: web.Request, row: Subscriber, raw: object) -> str:
    """The audit detail of the change ("active → blocked"), "" when nothing changed."""
    if not isinstance(raw, str) or raw not in STATUSES:
        raise BadInput(f"status must be one of {', '.join(STATUSES)}")
    wanted = SubscriberStatus(raw)
    if not await _store(request).set_status(row.channel, row.address, wanted):
        return ""
    return f"{row.status.value} → {wanted.value}"


async def _set_topics(request: web.Request, row: Subscriber, raw: object) -> tuple[str, tuple[str, ...]]:
    """The audit detail ("" when nothing changed), and what to tell the editor: what was taken, refused
    (with suggestions) or left over the cap, and the topics now."""
    if not isinstance(raw, str) or len(raw) > MAX_TOPICS_CHARS:
        raise BadInput(f"at most {MAX_TOPICS} topics of {MAX_TOPIC_LENGTH} characters")
    change = request.app[SERVICES].topics.choose(row.topics, keep=split_words(raw), words=())
    notice = tuple(topic_lines(change))
    if not change.changed:
        return "", notice
    await _store(request).set_topics(row.channel, row.address, change.after)
    return " ".join(change.after) or "(none)", notice


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > MAX_ID_DIGITS:
        raise NotFound(f"no subscriber with id {raw[:20]!r}")
    return int(raw)
