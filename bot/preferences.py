"""The reader's preference page, linked from the footer of every newsletter mail.

    GET  /preferences/{token}   the reader's topics as checkboxes (theirs, the popular ones, and every
                                glossary topic under "更多话题"), a box for other words, a pause of
                                1/2/3/6 issues or resuming, and a button to leave; changes nothing
    POST /preferences/{token}   saves what the form says and shows what changed; its leave button
                                unsubscribes, as the one-click link does

The token (bot/tokens.py, Purpose.PREFERENCES, never expires) names the subscriber as the unsubscribe
token does. Unlike the one-click POST, which a mail provider makes without a page, this POST comes from
our page, so it also carries the page's CSRF pair (bot/csrf.py): another site cannot make a reader's
browser change their topics, even with a token it saw.

Topic words go through the shared vocabulary (bot/topics.py), so a topic means here what it means on
WeChat and Telegram, and its refusals and suggestions read the same. Every bound is checked before
anything is written, and a request over one is refused whole with one line: what a reader sees saved is
all that was saved.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiDictProxy

from bot.csrf import FIELD, FORM_GUARD, CsrfRefused
from bot.services import SERVICES
from bot.site import TEMPLATES
from bot.subscriptions import SIGNUP, _masked
from bot.tokens import BadToken, Purpose
from bot.topics import (
    MAX_REQUEST_CHARS,
    Change,
    TopicVocabulary,
    Understood,
    change_lines,
    describe_change,
    describe_topics,
    split_words,
)
from content.errors import BadInput
from storage.subscribers import MAX_PAUSED_ISSUES, MAX_TOPICS, Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]

PREFERENCES = "preferences"  # the route's name, for the GET and the POST
# The popular topics offered beside the reader's own (the rest are under "更多话题").
OFFERED_POPULAR = 12
PAUSE_CHOICES = (1, 2, 3, 6)
KEEP = "keep"  # the pause field's "leave it as it is"
LEAVE = "leave"  # the value of the leave button's `action`
# Statuses whose reader may still change their choices (a PENDING one has not confirmed yet, but the
# link names them all the same).
_RECEIVING = (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)


class Refused(BadInput):
    """A form over one of the page's bounds: nothing is saved; the message is for the reader."""


@dataclass(frozen=True, slots=True)
class TopicBox:
    topic: str
    checked: bool


@dataclass(frozen=True, slots=True)
class PreferenceForm:
    action: str
    csrf: str
    topics: tuple[TopicBox, ...]  # the reader's own (ticked), then the popular ones
    more_topics: tuple[str, ...]  # every other glossary topic, folded away
    paused: int


def setup(app: web.Application) -> None:
    router = app.router
    router.add_get("/preferences/{token}", preferences_page, name=PREFERENCES)
    router.add_post("/preferences/{token}", save_preferences, name=PREFERENCES)


def topic_lines(change: Change) -> list[str]:
    """What the reader (or the editor) is told about the topics: the shared reply, or that nothing
    changed; then the topics as they are now."""
    said = change.added or change.removed or change.over_cap or change.understood.refused
    if not said and not change.understood.too_long:
        return ["话题没有变化。", describe_topics(change.after)]
    return [*change_lines(change).split("\n"), describe_topics(change.after)]


async def preferences_page(request: web.Request) -> web.Response:
    """The form; changes nothing, as mail scanners open links too."""
    try:
        subscriber = await _subscriber(request)
    except BadToken as error:
        return _bad_link(request, error)
    if subscriber.status not in _RECEIVING:
        return _page(request, "已退订", [f"{_masked(subscriber.address)} 已经退订，不会再收到简报。"])
    vocabulary = request.app[SERVICES].topics
    own = subscriber.topics
    popular = [topic for topic in vocabulary.popular(OFFERED_POPULAR) if topic not in own]
    shown = {*own, *popular}
    token = request.app[FORM_GUARD].offer(request)
    form = PreferenceForm(
        action=_own_url(request),
        csrf=token.field,
        topics=tuple(TopicBox(topic, True) for topic in own)
        + tuple(TopicBox(topic, False) for topic in popular),
        more_topics=tuple(topic for topic in vocabulary.labels if topic not in shown),
        paused=subscriber.paused_issues,
    )
    lines = [f"{_masked(subscriber.address)} 的订阅设置。", describe_topics(own)]
    response = _page(request, "订阅设置", lines, form=form)
    token.set_cookie(response)
    return response


async def save_preferences(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        subscriber = await _subscriber(request)
    except BadToken as error:
        return _bad_link(request, error)
    guard = request.app[FORM_GUARD]
    try:
        guard.check_origin(request)  # before reading a body that is refused anyway
        form = await _read_form(request)
        guard.check(request, form)
    except CsrfRefused:
        return _refusal(request, "这个表单已过期，或不是从本站的页面提交的：请刷新页面再提交。", 403)
    except Refused as error:
        return _refusal(request, error.message, 400)
    masked = _masked(subscriber.address)
    if form.getall("action", []) == [LEAVE]:
        if await services.subscribers.unsubscribe(subscriber.channel, subscriber.address):
            log.info("subscriber %d: unsubscribed on the preference page", subscriber.id)
        return _page(request, "已退订", [f"{masked} 已退订，不会再收到简报。"])
    if subscriber.status not in _RECEIVING:
        return _refusal(request, f"{masked} 已经退订，什么也没有改；如需再次订阅，请重新填写订阅表单。", 409)
    try:
        change, pause = _read_choices(form, services.topics, subscriber)
    except Refused as error:
        return _refusal(request, error.message, 400)
    saved = await services.subscribers.set_preferences(
        subscriber.channel, subscriber.address, topics=change.after, paused_issues=pause
    )
    if saved is None:  # erased between the token's check and now
        return _refusal(request, "这个地址已不在订阅列表中，什么也没有改。", 404)
    log.info("subscriber %d: preferences saved", saved.id)
    lines = topic_lines(change) + _pause_lines(subscriber.paused_issues, pause)
    return _page(request, "已保存", lines, back_url=_own_url(request))


def _read_choices(
    form: Form, vocabulary: TopicVocabulary, subscriber: Subscriber
) -> tuple[Change, int | None]:
    ticked = [_text(value) for value in form.getall("topic", [])]
    # Every box the page can show is one of theirs or a glossary topic: more is not from our page.
    most = MAX_TOPICS + len(vocabulary.labels)
    if len(ticked) > most:
        raise Refused(f"一次最多勾选 {most} 个话题，什么也没有改。")
    more = _single(form, "more") or ""
    if len(more) > MAX_REQUEST_CHARS:
        nothing = Change(subscriber.topics, subscriber.topics, understood=Understood(too_long=True))
        raise Refused(describe_change(nothing, verb="订阅"))
    pause = _pause(_single(form, "pause"))
    return vocabulary.choose(subscriber.topics, keep=ticked, words=split_words(more)), pause


def _pause(raw: str | None) -> int | None:
    """None to leave the pause as it is, else the issues to skip (0 resumes)."""
    if raw is None or raw == KEEP:
        return None
    # isascii: str.isdigit also takes other scripts' digits and superscripts, which int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 2) or int(raw) > MAX_PAUSED_ISSUES:
        raise Refused(f"暂停的期数须是 0 到 {MAX_PAUSED_ISSUES} 之间的整数，什么也没有改。")
    return int(raw)


def _pause_lines(before: int, pause: int | None) -> list[str]:
    if pause is None:
        return [f"暂停中：接下来的 {before} 期不发给你。"] if before else []
    if pause == 0:
        return ["已恢复：下一期起照常发送。"] if before else []
    return [f"已暂停：接下来的 {pause} 期不发给你，之后自动恢复。"]


def _single(form: Form, name: str) -> str | None:
    values = form.getall(name, [])
    if len(values) > 1:
        raise Refused("表单里有重复的项，什么也没有改：请刷新页面再提交。")
    return _text(values[0]) if values else None


def _text(value: object) -> str:
    if not isinstance(value, str):  # an uploaded file where a word should be
        raise Refused("表单无法读取，什么也没有改：请刷新页面再提交。")
    return value


async def _read_form(request: web.Request) -> Form:
    try:
        return await request.post()  # over the app's body limit: 413 before anything is parsed
    except (ValueError, LookupError):  # LookupError: a charset Python does not know
        raise Refused("表单无法读取，什么也没有改：请刷新页面再提交。") from None


async def _subscriber(request: web.Request) -> Subscriber:
    return await request.app[SIGNUP].tokens.verify(
        Purpose.PREFERENCES,
        request.match_info["token"],
        dt.datetime.now(dt.UTC),
        request.app[SERVICES].subscribers.get_by_id,
    )


def _own_url(request: web.Request) -> str:
    # Built from our own route and the token that matched it: the page never links elsewhere on input.
    return str(request.app.router[PREFERENCES].url_for(token=request.match_info["token"]))


def _bad_link(request: web.Request, error: BadToken) -> web.Response:
    line = f"这个订阅设置链接无法使用（{error.message}）：请用最近一期邮件里的链接。"
    return _refusal(request, line, 400, title="链接无效")


def _refusal(request: web.Request, line: str, status: int, *, title: str = "没有保存") -> web.Response:
    """A refusal: one line, nothing else on the page (no form to resubmit as it was)."""
    return _page(request, title, [line], status=status)


def _page(
    request: web.Request,
    title: str,
    lines: Sequence[str],
    *,
    status: int = 200,
    form: PreferenceForm | None = None,
    back_url: str | None = None,
) -> web.Response:
    template = request.app[TEMPLATES].get_template("preferences.html.j2")
    html = template.render(
        title=title,
        lines=lines,
        form=form,
        back_url=back_url,
        field_name=FIELD,
        max_topics=MAX_TOPICS,
        max_request_chars=MAX_REQUEST_CHARS,
        pause_choices=PAUSE_CHOICES,
        keep=KEEP,
        leave=LEAVE,
    )
    return web.Response(text=html, content_type="text/html", status=status)
