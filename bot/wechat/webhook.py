"""The /wechat route WeChat calls: GET to verify the server, POST for every message and event.

Order of work for a POST: signature and timestamp (403, nothing read), body size (413), in safe mode the
envelope's XML, msg_signature and decryption, then the replay check (403), the message's safe XML and
fields (400), and the answer. WeChat waits 5 s for it and otherwise retries (3 tries), so a delivery is
answered once and its reply kept: a retry gets the same reply, and an answer that is not ready within
REPLY_DEADLINE_SECONDS is sent later as a customer-service message while WeChat gets "success" (no
passive reply).

The replay check (protocol.PushMemory): in plain mode `signature` does not cover the body, so each signed
(timestamp, nonce) is remembered with a digest of its body until the timestamp is stale; the same pair
with another body is a forgery (403, nothing processed). In safe mode `msg_signature` covers the Encrypt
field, so a forged body fails there; the pair is bound to the decrypted message, which a retry encrypted
afresh still matches. The memory is per process: under `serve --workers N` each worker remembers only
the pushes it received, so a replayed URL sent to another worker is not recognised. That is why safe mode
(JIANBAO_WECHAT_AES_KEY) is the recommended set-up: there the body cannot be forged at all.

GET is WeChat's server verification: echostr is echoed, as text/plain, only under a valid signature. The
signature does not cover echostr either, so a captured URL could reflect any text for 5 minutes: it is
bounded to MAX_ECHOSTR_CHARS and served as text/plain with nosniff, never as something a browser renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from cachetools import TTLCache

from bot.batch_writer import buffering
from bot.last_seen import LastSeenBuffer
from bot.services import SERVICES
from bot.site import ARCHIVE, absolute_url
from bot.wechat.dialog import CHANNEL, Dialog, LastSearch
from bot.wechat.protocol import (
    MAX_XML_BYTES,
    Envelope,
    Message,
    PushMemory,
    check_signature,
    masked,
    parse_fields,
    text_reply,
)
from channels.wechat.api import WeChatApi, WeChatApiError
from content.errors import BadInput, NotFound, TooLarge

log = logging.getLogger(__name__)

SUCCESS = "success"  # "no passive reply": WeChat neither retries nor shows the user an error
REPLY_DEADLINE_SECONDS = 4.0  # WeChat gives up after 5 s; leave a second for the network
DELIVERY_TTL_SECONDS = 10 * 60  # WeChat's 3 tries span about 15 s; keep replies well beyond that
DELIVERY_MAX_ENTRIES = 10_000
LAST_SEARCH_TTL_SECONDS = 30 * 60  # how long 更多 continues a reader's last search
LAST_SEARCH_MAX_ENTRIES = 10_000
FOLLOW_UP_GRACE_SECONDS = 5.0  # at shutdown, how long follow-ups still being sent may take
# WeChat's echostr is a random number of ~19 digits; room to spare, but no page of text to reflect.
MAX_ECHOSTR_CHARS = 128


@dataclass
class WeChatState:
    """The WeChat channel of one running app (absent when the channel is off)."""

    token: str
    envelope: Envelope | None  # safe mode; None without an EncodingAESKey
    dialog: Dialog
    api: WeChatApi | None  # None without AppID and secret: no customer-service follow-ups
    deadline: float
    # The reply to each recent delivery, for WeChat's retries. Per app and lost on restart: the worst case
    # is a retry processed twice, which the subscriber store tolerates (subscribe and unsubscribe are
    # idempotent).
    deliveries: TTLCache[str, asyncio.Future[str]] = field(
        default_factory=lambda: TTLCache(maxsize=DELIVERY_MAX_ENTRIES, ttl=DELIVERY_TTL_SECONDS)
    )
    pushes: PushMemory = field(default_factory=PushMemory)  # signed pairs seen, against replays
    follow_ups: set[asyncio.Task[None]] = field(default_factory=set)
    clock: Callable[[], float] = time.time


WECHAT = web.AppKey("wechat_state", WeChatState)
# The passive-reply deadline, a key of its own so that a test can shorten it before the app starts.
REPLY_DEADLINE = web.AppKey("wechat_reply_deadline", float)


def setup(app: web.Application) -> None:
    app[REPLY_DEADLINE] = REPLY_DEADLINE_SECONDS
    app.cleanup_ctx.append(_channel)
    app.router.add_get("/wechat", verify)
    app.router.add_post("/wechat", receive)


async def _channel(app: web.Application) -> AsyncIterator[None]:
    settings = app[SERVICES].settings
    if not settings.wechat_token:
        yield  # off: the routes answer 404
        return
    envelope = None
    if settings.wechat_aes_key:
        try:
            envelope = Envelope(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)
        except ValueError as error:  # at start, before anything is served: the operator's to fix
            raise ValueError(f"JIANBAO_WECHAT_AES_KEY / JIANBAO_WECHAT_APPID: {error}") from None
    searches: TTLCache[str, LastSearch] = TTLCache(
        maxsize=LAST_SEARCH_MAX_ENTRIES, ttl=LAST_SEARCH_TTL_SECONDS
    )
    last_seen = LastSeenBuffer(app[SERVICES].subscribers, CHANNEL)
    async with aiohttp.ClientSession() as session, buffering(last_seen):
        api = None
        if settings.wechat_appid and settings.wechat_secret:
            api = WeChatApi(
                session,
                base_url=settings.wechat_api_url,
                appid=settings.wechat_appid,
                secret=settings.wechat_secret,
            )
        state = WeChatState(
            token=settings.wechat_token,
            envelope=envelope,
            dialog=Dialog(app[SERVICES], searches, last_seen, archive_url=_archive_url(app)),
            api=api,
            deadline=app[REPLY_DEADLINE],
        )
        app[WECHAT] = state
        try:
            yield
        finally:
            await _finish_follow_ups(state)


def _archive_url(app: web.Application) -> str:
    public_url = app[SERVICES].settings.public_url
    return absolute_url(public_url, app.router[ARCHIVE].url_for()) if public_url else ""


def _state(request: web.Request) -> WeChatState:
    state = request.app.get(WECHAT)
    if state is None:
        raise NotFound("not found")
    return state


async def verify(request: web.Request) -> web.Response:
    """Server verification: echo `echostr` when the signature is ours."""
    state = _state(request)
    query = request.query
    check_signature(
        state.token, query.get("signature"), query.get("timestamp"), query.get("nonce"), now=state.clock()
    )
    echo = query.get("echostr", "")
    if len(echo) > MAX_ECHOSTR_CHARS:
        raise BadInput(f"echostr over {MAX_ECHOSTR_CHARS} characters")
    return web.Response(text=echo, content_type="text/plain")  # nosniff: bot/http_policy.py, every response


async def receive(request: web.Request) -> web.Response:
    state = _state(request)
    query = request.query
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    check_signature(state.token, query.get("signature"), timestamp, nonce, now=state.clock())
    envelope = _envelope(state, query.get("encrypt_type", "raw"))
    document = await _read_xml(request)
    if envelope is not None:
        plaintext = envelope.open(parse_fields(document), query.get("msg_signature"), timestamp, nonce)
        document = plaintext.encode()
    # In plain mode the signature leaves the body open to forgery: only this check ties the two together.
    state.pushes.admit(timestamp, nonce, document, now=state.clock())
    message = Message.from_fields(parse_fields(document))
    reply = await _answer(state, message)
    if reply == SUCCESS:
        return web.Response(text=SUCCESS)
    if envelope is not None:
        reply = envelope.seal(reply, nonce=nonce, timestamp=int(state.clock()))
    return web.Response(text=reply, content_type="application/xml")


def _envelope(state: WeChatState, encrypt_type: str) -> Envelope | None:
    """Safe mode's envelope for an encrypted push, None for a plain one."""
    if encrypt_type.lower() != "aes":
        return None
    if state.envelope is None:
        raise BadInput("encrypted push, but no EncodingAESKey is configured")
    return state.envelope


async def _read_xml(request: web.Request) -> bytes:
    """The body, refused before reading when it says it is too large, and after when it was."""
    if request.content_length is not None and request.content_length > MAX_XML_BYTES:
        raise TooLarge(f"XML body over {MAX_XML_BYTES // 1024} KB")
    body = await request.read()
    if len(body) > MAX_XML_BYTES:  # sent chunked, without a length
        raise TooLarge(f"XML body over {MAX_XML_BYTES // 1024} KB")
    return body


async def _answer(state: WeChatState, message: Message) -> str:
    """The reply body (XML, or "success"), given once per delivery however often WeChat delivers it."""
    earlier = state.deliveries.get(message.delivery)
    if earlier is not None:
        log.info("WeChat redelivered a %s from %s: same reply", message.kind, masked(message.openid))
        return await asyncio.shield(earlier)  # still being answered, or answered: the same reply either way
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    state.deliveries[message.delivery] = answer
    try:
        reply = await _reply_in_time(state, message)
    except BaseException:  # cancelled: the next delivery must be answered afresh
        state.deliveries.pop(message.delivery, None)
        answer.cancel()
        raise
    answer.set_result(reply)
    return reply


async def _reply_in_time(state: WeChatState, message: Message) -> str:
    # Most messages (keyword searches) are answered here and now: no task, no loop turns to wait for.
    text = state.dialog.respond_at_once(message)
    if text is not None:
        return text_reply(message, text, now=int(state.clock()))
    answering = asyncio.create_task(state.dialog.respond(message))
    try:
        text = await asyncio.wait_for(asyncio.shield(answering), timeout=state.deadline)
    except TimeoutError:
        log.warning(
            "WeChat answer to %s not ready within %.1f s: replying later",
            masked(message.openid),
            state.deadline,
        )
        follow_up = asyncio.create_task(_follow_up(state, message, answering))
        state.follow_ups.add(follow_up)
        follow_up.add_done_callback(state.follow_ups.discard)
        return SUCCESS
    except asyncio.CancelledError:
        answering.cancel()
        raise
    return text_reply(message, text, now=int(state.clock())) if text else SUCCESS


async def _follow_up(state: WeChatState, message: Message, answering: asyncio.Task[str | None]) -> None:
    """Send a late answer as a customer-service message (allowed for 48 h after the user's message)."""
    text = await answering
    if not text:
        return
    if state.api is None:
        log.warning("late WeChat answer to %s dropped: no AppID/secret to send it", masked(message.openid))
        return
    try:
        await state.api.send_text(message.openid, text)
    except WeChatApiError as error:
        log.warning("late WeChat answer to %s not delivered: %s", masked(message.openid), error)
    else:
        log.info("late WeChat answer sent to %s", masked(message.openid))


async def _finish_follow_ups(state: WeChatState) -> None:
    if not state.follow_ups:
        return
    pending = set(state.follow_ups)
    _, unfinished = await asyncio.wait(pending, timeout=FOLLOW_UP_GRACE_SECONDS)
    for task in unfinished:
        task.cancel()
    for task in unfinished:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if unfinished:
        log.warning("%d late WeChat answers not sent: shutting down", len(unfinished))
