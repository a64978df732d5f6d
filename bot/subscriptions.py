"""Email sign-up and leaving, and the click-tracking redirect.

    POST /subscribe             form field email (and optional topics) from an issue page, with its
                                CSRF token (bot/csrf.py): a PENDING subscriber and a confirmation mail
                                (double opt-in), within hourly caps (bot/signup_caps.py)
    GET  /confirm/{token}       the link of that mail: a page with a button; changes nothing, because
                                mail scanners fetch links (HEAD too)
    POST /confirm/{token}       the button: PENDING -> ACTIVE
    GET  /unsubscribe/{token}   a page with a button; changes nothing, for the same reason
    POST /unsubscribe/{token}   RFC 8058 one-click unsubscribe: 200 with a short text, never a redirect
    /preferences/{token}        the reader's topics and pause: bot/preferences.py, set up with these
    GET  /r/{token}             302 to the URL remembered for a tracking token, the click noted for
                                bot/click_buffer.py to record in batches; 404 otherwise. `?s=` is a
                                reader id (JIANBAO_TRACK_SUBSCRIBERS), checked there, never refused

The sign-up answer is the same page whatever the address's state, and the mail leaves from a background
queue, so neither the page nor its timing tells whether an address is subscribed. Every refusal (403
without the form's token, 429 over a cap, 503 when no mail can go out now) is decided before anything
is written, and the same for every address: a refused sign-up stores nothing and tells nothing. Logs
name subscribers by id, never by address, and never hold a token.

Sign-ups never confirmed are deleted once their link has expired (hourly, and at start), so a flood of
sign-ups leaves no rows behind.

The routes are named (CONFIRM, UNSUBSCRIBE...): the links in mails and on the pages are built from those
names. The broadcast worker, which runs without this app, writes its unsubscribe links itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import quote, urlsplit

from aiohttp import web
from cachetools import TTLCache

from bot.batch_writer import buffering
from bot.click_buffer import CLICKS, ClickBuffer
from bot.csrf import FORM_GUARD, CsrfRefused, FormGuard
from bot.services import SERVICES, Services
from bot.signup_caps import SignupCaps
from bot.site import SUBSCRIBE, TEMPLATES, absolute_url
from bot.tokens import CLOCK_SKEW, CONFIRM_LIFETIME, BadToken, Purpose, ReaderIds, SubscriberTokens
from channels.channel import needs_public_url
from channels.email.channel import EMAIL
from channels.email.mailer import Mailer, MailRefused
from content.errors import BadInput, NotFound, TooManyRequests, Unavailable
from storage.clicks import ClickStore
from storage.subscribers import Subscriber, SubscriberStatus, normalise_topics

log = logging.getLogger(__name__)

# One confirmation mail per address per window: the form cannot be used to flood someone's inbox.
CONFIRMATION_INTERVAL_SECONDS = 600.0
# Confirmation mails waiting to be sent; beyond this sign-ups are refused (503) until it empties.
OUTBOX_SIZE = 1000
# After the mail server could not be reached, sign-ups are refused (503) for this long rather than
# promised a mail that cannot leave; then the next one tries again.
MAILER_DOWN_SECONDS = 60.0
# What a refusal for a full outbox asks the client to wait.
OUTBOX_RETRY_SECONDS = 60
# Unconfirmed sign-ups are deleted this often; a link is dated a moment after its row (and another
# worker's clock may differ), so a row goes only CLOCK_SKEW after its link has expired.
PURGE_EVERY_SECONDS = 3600.0
UNCONFIRMED_LIFETIME = CONFIRM_LIFETIME + CLOCK_SKEW
# On shutdown, how long queued mails get to leave before they are given up.
DRAIN_SECONDS = 10.0
# Route names (each for the GET and the POST of its path).
CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
TRACKED_LINK = "tracked_link"
_SIGN_UP_PAGE = (
    "请查收邮件",
    "如果这个地址还没有订阅，我们刚发出一封确认邮件：点开其中的链接，"
    "再按页面上的按钮即完成订阅（7 天内有效）。",
    "没有收到？请看看垃圾邮件文件夹，或过几分钟再试。",
)


class MailNotSent(Unavailable):
    """No confirmation mail can be queued now: the outbox is full or the mail server is down."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class PageForm:
    """The one button of a sign-up page: a POST to `action`."""

    action: str
    label: str
    hidden: tuple[tuple[str, str], ...] = ()


class EmailSignup:
    """The sign-up machinery of one app: token signer, form guard, caps, mailer and its outbox."""

    def __init__(self, services: Services, mailer: Mailer | None, router: web.UrlDispatcher) -> None:
        settings = services.settings
        self.tokens = SubscriberTokens(settings.secret_key)
        self.forms = FormGuard(settings.secret_key, settings.public_url)
        self.caps = SignupCaps(
            per_client=settings.signup_mails_per_client, per_hour=settings.signup_mails_per_hour
        )
        self.mailer = mailer
        self._settings = settings
        self._router = router
        # Unbounded as a queue, bounded by admission: a place is reserved before anything is written.
        self._outbox: asyncio.Queue[tuple[int, EmailMessage]] = asyncio.Queue()
        self._reserved = 0
        self._mailer_down_until = 0.0  # time.monotonic() until which sign-ups get 503
        # The subscribers mailed within CONFIRMATION_INTERVAL_SECONDS. Only sign-ups the caps let through
        # get here, so the hourly cap bounds them.
        self._recently_mailed: TTLCache[int, bool] = TTLCache(
            maxsize=max(1, settings.signup_mails_per_hour), ttl=CONFIRMATION_INTERVAL_SECONDS
        )

    def confirm_url(self, subscriber: Subscriber, now: dt.datetime) -> str:
        token = self.tokens.make(Purpose.CONFIRM, subscriber, now)
        return absolute_url(self._settings.public_url, self._router[CONFIRM].url_for(token=token))

    def unsubscribe_url(self, subscriber: Subscriber, now: dt.datetime) -> str:
        """For the List-Unsubscribe header and footer of newsletter mail (EmailTemplate.personalize)."""
        token = self.tokens.make(Purpose.UNSUBSCRIBE, subscriber, now)
        return absolute_url(self._settings.public_url, self._router[UNSUBSCRIBE].url_for(token=token))

    @contextlib.contextmanager
    def admission(self, remote: str | None, address: str) -> Iterator[None]:
        """Let one sign-up through, with a place in the outbox for its mail while the block runs, or
        refuse it before anything is written: MailNotSent (503) when no mail can go out now, else
        TooManyRequests (429) over a cap. The same for every address, whatever its state."""
        moment = time.monotonic()
        if moment < self._mailer_down_until:
            raise MailNotSent(
                "the mail server cannot be reached", math.ceil(self._mailer_down_until - moment)
            )
        if self._outbox.qsize() + self._reserved >= OUTBOX_SIZE:
            raise MailNotSent("too many confirmation mails are waiting", OUTBOX_RETRY_SECONDS)
        refusal = self.caps.admit(remote, address)
        if refusal is not None:
            log.debug("sign-up refused: %s cap reached", refusal.cap)  # a flood must not flood the log
            raise TooManyRequests(f"too many sign-ups ({refusal.cap})", refusal.retry_after)
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def queue_confirmation(self, subscriber: Subscriber, now: dt.datetime) -> None:
        """Within `admission`, which keeps a place in the outbox for it."""
        if subscriber.id in self._recently_mailed:
            log.info("subscriber %d: confirmation mail sent recently, not again", subscriber.id)
            return
        self._outbox.put_nowait((subscriber.id, self._confirmation(subscriber, now)))
        self._recently_mailed[subscriber.id] = True

    def confirmed(self, subscriber_id: int) -> None:
        """The mail did its job: should they leave and come back, the next one may go at once."""
        self._recently_mailed.pop(subscriber_id, None)

    async def deliver(self) -> None:
        """Send what is queued, one mail at a time, forever (a task of the app's lifetime)."""
        assert self.mailer is not None
        while True:
            subscriber_id, message = await self._outbox.get()
            try:
                await self.mailer.send(message)
                self._mailer_down_until = 0.0
                log.info("subscriber %d: confirmation mail sent", subscriber_id)
            except MailRefused as error:  # this recipient, not the server: others may still go
                # Let them ask again at once rather than wait out the interval for a mail that never left.
                self._recently_mailed.pop(subscriber_id, None)
                log.warning("subscriber %d: confirmation mail refused: %s", subscriber_id, error.message)
            except Unavailable as error:
                self._recently_mailed.pop(subscriber_id, None)
                self._mailer_down_until = time.monotonic() + MAILER_DOWN_SECONDS
                log.warning("subscriber %d: confirmation mail not sent: %s", subscriber_id, error.message)
            except Exception:  # a bug must not stop every later mail: log it and carry on
                self._recently_mailed.pop(subscriber_id, None)
                log.exception("subscriber %d: confirmation mail failed", subscriber_id)
            finally:
                self._outbox.task_done()

    async def drain(self) -> None:
        await self._outbox.join()

    def _confirmation(self, subscriber: Subscriber, now: dt.datetime) -> EmailMessage:
        link = self.confirm_url(subscriber, now)
        message = EmailMessage()
        message["From"] = self._settings.mail_from
        message["To"] = subscriber.address
        message["Subject"] = "请确认订阅嵌入式AI简报"
        message["Date"] = formatdate(now.timestamp(), usegmt=True)
        # make_msgid's default domain is this host's FQDN, found with a DNS lookup; the sender's is better.
        domain = parseaddr(self._settings.mail_from)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid("confirm", domain=domain)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
        message.set_content(
            "你好！\n\n"
            "有人（希望是你）用这个邮箱地址订阅了嵌入式AI简报。请打开下面的链接，按页面上的按钮确认订阅，"
            "7 天内有效：\n\n"
            f"{link}\n\n"
            "如果不是你本人的操作，忽略这封邮件即可：不确认就不会收到任何简报。\n"
        )
        return message


SIGNUP = web.AppKey("email_signup", EmailSignup)


def setup(app: web.Application) -> None:
    """Add this feature's routes and its own start/stop steps to the app."""
    router = app.router
    router.add_post("/subscribe", subscribe, name=SUBSCRIBE)
    # A GET and a POST of one path under one name share one resource (aiohttp reuses the last one added).
    router.add_get("/confirm/{token}", confirm_page, name=CONFIRM)  # and HEAD, which changes nothing either
    router.add_post("/confirm/{token}", confirm, name=CONFIRM)
    router.add_get("/unsubscribe/{token}", unsubscribe_page, name=UNSUBSCRIBE)
    router.add_post("/unsubscribe/{token}", unsubscribe, name=UNSUBSCRIBE)
    router.add_get("/r/{token}", redirect, name=TRACKED_LINK)
    # The preference page reads its tokens from this feature's EmailSignup, so it comes with it; imported
    # here because it imports this module.
    from bot import preferences

    preferences.setup(app)
    app.cleanup_ctx.append(_signup_context)
    app.cleanup_ctx.append(_clicks_context)


async def _clicks_context(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    settings = services.settings
    readers = ReaderIds(settings.secret_key) if settings.track_subscribers and settings.secret_key else None
    clicks = ClickBuffer(ClickStore(services.storage.database), settings.secret_key, readers=readers)
    app[CLICKS] = clicks
    async with buffering(clicks):
        yield


async def _signup_context(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    mailer = _mailer(services)
    signup = EmailSignup(services, mailer, app.router)
    app[SIGNUP] = signup
    app[FORM_GUARD] = signup.forms  # the issue pages offer its tokens with the sign-up form
    await _purge_unconfirmed(services)  # sign-ups left from before a restart go now, not in an hour
    tasks = [asyncio.create_task(_keep_purging(services))]
    if mailer is not None:
        tasks.append(asyncio.create_task(signup.deliver()))
    try:
        yield
    finally:
        if mailer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signup.drain(), DRAIN_SECONDS)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _keep_purging(services: Services) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY_SECONDS)
        await _purge_unconfirmed(services)


async def _purge_unconfirmed(services: Services) -> None:
    try:
        purged = await services.subscribers.purge_unconfirmed(UNCONFIRMED_LIFETIME, channel=EMAIL.name)
    except Exception as error:  # the database is briefly unreachable (or a bug): the next round tries again
        log.warning("purging expired sign-ups failed (%s); retrying later", type(error).__name__)
        return
    if purged:
        log.info("purged %d sign-ups never confirmed", purged)


def _mailer(services: Services) -> Mailer | None:
    settings = services.settings
    if not settings.smtp_url:
        return None
    reason = ""
    if not settings.public_url:
        reason = f"off: {needs_public_url('the links in sign-up mail')}"
    else:
        try:
            return Mailer(settings.smtp_url)
        except BadInput as error:
            reason = f"off: {error.message}"
    log.error("email sign-up is %s", reason)
    services.channel_status[EMAIL.name] = reason
    return None


def _page(
    request: web.Request,
    title: str,
    *lines: str,
    status: int = 200,
    link: tuple[str, str] | None = None,
    form: PageForm | None = None,
    retry_after: float | None = None,
) -> web.Response:
    """A page of the sign-up pages: a title, lines of text, a link, and a button."""
    template = request.app[TEMPLATES].get_template("subscription.html.j2")
    html = template.render(title=title, lines=lines, link=link, form=form)
    headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return web.Response(text=html, content_type="text/html", status=status, headers=headers)


async def subscribe(request: web.Request) -> web.Response:
    services, signup = request.app[SERVICES], request.app[SIGNUP]
    if signup.mailer is None:
        raise NotFound("email sign-up is not offered here")
    try:
        signup.forms.check_origin(request)  # before reading a body that is refused anyway
        try:
            form = await request.post()  # over the app's body limit: 413 before anything is parsed
        except (ValueError, LookupError):  # LookupError: a charset Python does not know
            raise BadInput("the sign-up form could not be read") from None
        signup.forms.check(request, form)
    except CsrfRefused:
        return _page(
            request,
            "请刷新页面",
            "这个订阅表单已过期，或不是从本站的页面提交的。",
            "请刷新页面，再提交一次。",
            status=CsrfRefused.status,
        )
    email = form.get("email")
    if not isinstance(email, str) or not email.strip(" "):
        raise BadInput("the form needs an email address")
    address = services.channels.check_address(EMAIL.name, email)
    topics = normalise_topics([value for value in form.getall("topics", []) if isinstance(value, str)])
    try:
        with signup.admission(request.remote, address):
            subscriber, _ = await services.subscribers.subscribe(
                EMAIL.name, address, topics=topics, confirmed=False
            )
            if subscriber.status == SubscriberStatus.PENDING:
                signup.queue_confirmation(subscriber, _now())
    except MailNotSent as error:
        return _page(
            request,
            "暂时无法发送确认邮件",
            "暂时无法发送确认邮件，请稍后再试。",
            "这次提交没有保存：请过几分钟重新填写订阅表单。",
            status=error.status,
            retry_after=error.retry_after,
        )
    except TooManyRequests as error:
        return _page(
            request,
            "请稍后再试",
            "这一小时内的订阅请求太多了，请稍后再试。",
            f"这次提交没有保存：请约 {math.ceil(error.retry_after / 60)} 分钟后重新填写订阅表单。",
            status=error.status,
            retry_after=error.retry_after,
        )
    # An ACTIVE address gets nothing new, and the same page: the form tells nobody who has subscribed.
    return _page(request, *_SIGN_UP_PAGE)


async def confirm_page(request: web.Request) -> web.Response:
    """What a reader, and any scanner of their mail, sees on opening the link: nothing changes here."""
    try:
        subscriber = await _subscriber(request, Purpose.CONFIRM, _now())
    except BadToken as error:
        return _bad_confirmation_link(request, error)
    masked = _masked(subscriber.address)
    if subscriber.status == SubscriberStatus.ACTIVE:
        return _page(request, "已经订阅", f"{masked} 已经订阅，将收到以后的每一期嵌入式AI简报。")
    if subscriber.status != SubscriberStatus.PENDING:
        return _gone_confirmation_link(request)
    return _page(
        request,
        "确认订阅嵌入式AI简报",
        f"按下面的按钮，{masked} 即订阅嵌入式AI简报。",
        "如果不是你本人的操作，关掉这个页面即可。",
        form=PageForm(_own_url(request, CONFIRM), "确认订阅"),
    )


async def confirm(request: web.Request) -> web.Response:
    # The token is the only credential, as for unsubscribing; the (empty) body is not read.
    services, signup = request.app[SERVICES], request.app[SIGNUP]
    now = _now()
    try:
        subscriber = await _subscriber(request, Purpose.CONFIRM, now)
    except BadToken as error:
        return _bad_confirmation_link(request, error)
    confirmed = await services.subscribers.confirm(subscriber.channel, subscriber.address)
    if confirmed is None:
        return _gone_confirmation_link(request)
    signup.confirmed(confirmed.id)
    log.info("subscriber %d: confirmed", confirmed.id)
    return _page(
        request,
        "订阅成功",
        f"{_masked(confirmed.address)} 将收到以后的每一期嵌入式AI简报。",
        link=("改变主意了？随时可以退订", signup.unsubscribe_url(confirmed, now)),
    )


def _bad_confirmation_link(request: web.Request, error: BadToken) -> web.Response:
    hint = "确认链接 7 天内有效，请重新订阅。" if "expired" in error.message else "请检查链接是否完整。"
    return _page(request, "链接无效", f"这个确认链接无法使用（{error.message}）。", hint, status=400)


def _gone_confirmation_link(request: web.Request) -> web.Response:
    return _page(request, "链接已失效", "这个地址已经退订；如需再次订阅，请重新填写订阅表单。", status=400)


async def unsubscribe_page(request: web.Request) -> web.Response:
    try:
        subscriber = await _subscriber(request, Purpose.UNSUBSCRIBE, _now())
    except BadToken as error:
        return _page(request, "链接无效", f"这个退订链接无法使用（{error.message}）。", status=400)
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return _page(request, "已退订", f"{_masked(subscriber.address)} 已经退订，不会再收到简报。")
    return _page(
        request,
        "退订嵌入式AI简报",
        f"退订后 {_masked(subscriber.address)} 将不再收到简报。",
        form=PageForm(_own_url(request, UNSUBSCRIBE), "确认退订", (("List-Unsubscribe", "One-Click"),)),
    )


async def unsubscribe(request: web.Request) -> web.Response:
    # RFC 8058: the POST carries no cookie and no login, the token is the only credential; its body
    # ("List-Unsubscribe=One-Click", or nothing from the page's button) is not needed, so not read.
    subscriber = await _subscriber(request, Purpose.UNSUBSCRIBE, _now())  # BadToken: 400, one line
    if await request.app[SERVICES].subscribers.unsubscribe(subscriber.channel, subscriber.address):
        log.info("subscriber %d: unsubscribed", subscriber.id)
    return web.Response(text="已退订 · unsubscribed\n")


async def redirect(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    clicks = request.app[CLICKS]
    token = request.match_info["token"]
    # A cached read, no write: the click is only noted, and recorded with others within a second.
    link = await clicks.store.link(token)
    if link is None or urlsplit(link.url).scheme.lower() not in ("http", "https"):
        raise NotFound("unknown link")
    # HEAD (link checkers, previews) follows the link without counting it.
    if request.method != "HEAD":
        reader = request.query.get("s")
        clicks.note(token, request.remote, request.headers.get("User-Agent"), reader=reader)
        services.metrics.clicks.labels(link.channel).inc()
    raise web.HTTPFound(_location(link.url), headers={"Cache-Control": "no-store"})


async def _subscriber(request: web.Request, purpose: Purpose, now: dt.datetime) -> Subscriber:
    services, signup = request.app[SERVICES], request.app[SIGNUP]
    return await signup.tokens.verify(
        purpose, request.match_info["token"], now, services.subscribers.get_by_id
    )


def _own_url(request: web.Request, route: str) -> str:
    """The path of `route` for this request's token: where a page's button posts."""
    return str(request.app.router[route].url_for(token=request.match_info["token"]))


def _location(url: str) -> str:
    # A header value must be ASCII without line breaks: percent-encode anything else, keeping the
    # URL's own syntax and escapes.
    return quote(url, safe=":/?#[]@!$&'()*+,;=%~")


def _masked(address: str) -> str:
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else f"{address[:3]}***"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
