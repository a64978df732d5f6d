"""A fake WeChat API server: an aiohttp app on a free loopback port.

Answers as api.weixin.qq.com does: HTTP 200 with JSON, {"errcode": 0, ...} on success and
{"errcode": N, "errmsg": "..."} otherwise. What it checks, as the real one does (sources: the official
docs as summarised in docs/channels.md, "WeChat Official Account"):

- /cgi-bin/stable_token: grant_type client_credential (40002), the AppID (40013) and secret (40125);
  issues a token valid 7200 s; normal mode hands out the current token while it is valid, force_refresh
  issues a new one and invalidates the old;
- every other call: access_token present (41001) and valid (40001);
- /cgi-bin/message/custom/send: a well-formed openid that is this account's (40003; `strangers` holds
  well-formed ones that are not), users outside the 48 h window (`outside_window`: 45015) or not following
  (`not_following`: 43004), text content at most 2048 bytes of UTF-8 (45002);
- /cgi-bin/draft/add: at least one article with title, content and thumb_media_id (answers a media_id);
- /cgi-bin/message/mass/sendall: a known media_id (40007), a repeated clientmsgid (45065), the daily quota
  (`mass_quota`, 1 by default: 45028);
- /cgi-bin/message/mass/preview (an editor's test send): msgtype mpnews with a media_id draft/add answered
  (40007), `touser` an openid of this account as for custom/send (40003) that follows it (43004); uses no
  quota, answers "preview success" with a msg_id.

Successful sends are recorded in `received` (path and JSON payload); `token_requests` records the
force_refresh flag of each stable_token call (never the secret); `paths` lists every request's path, known
routes or not (a test can check that nothing was fetched at all).

For the broadcast engine: `mass_sends` lists the successful mass sends (clientmsgid, media_id, msg_id),
`previews_to(openid)` the media_ids previewed to a user and `draft(media_id)` the articles of a draft;
`delivered()` counts the accepted customer-service texts by (openid, content), a count above 1 being a
duplicate; `window_closed(openid)` puts a user outside the 48 h window (45015). `faults(FaultPlan)`
(tests/fakes/faults.py) injects failures into message/custom/send and message/mass/preview (key: the
openid) and message/mass/sendall (key: the clientmsgid, else the media_id):

- "500": HTTP 500 with a non-JSON body, as a failing gateway in front of the API answers; nothing sent;
- "-1": WeChat's own errcode -1 "system error" (HTTP 200), to be retried later; nothing sent;
- "45009": the frequency limit; nothing sent;
- "drop": the connection closed with no answer (aiohttp: ServerDisconnectedError); nothing sent;
- "slow": sent and recorded, then answered `slow_seconds` late. For sendall this is the case
  clientmsgid exists for: the retry of a send that timed out gets 45065, not a second broadcast.

It also serves GET /_fake/stats (see `stats()`) for a sender in another process (tests/fakes/serve.py).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.faults import FaultPlan

APPID = "wx0123456789abcdef"
SECRET = "fake-app-secret-0123456789abcdef"
TOKEN_LIFETIME_SECONDS = 7200
# Customer-service text; longer is 45002. 2048 is unofficial (docs/channels.md, "Passive reply").
MAX_TEXT_BYTES = 2048
_OPENID = re.compile(r"[A-Za-z0-9_-]{28,64}")
FAULTS = ("500", "-1", "45009", "drop", "slow")  # what a FaultPlan may inject into the three send routes
CUSTOM_SEND = "/cgi-bin/message/custom/send"
MASS_SENDALL = "/cgi-bin/message/mass/sendall"
MASS_PREVIEW = "/cgi-bin/message/mass/preview"

Method = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MassSend:
    clientmsgid: str | None
    media_id: str
    msg_id: int


@dataclass(frozen=True, slots=True)
class Preview:
    openid: str
    media_id: str
    msg_id: int


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeWeChatApi:
    def __init__(self, appid: str = APPID, secret: str = SECRET, *, mass_quota: int = 1) -> None:
        self.appid = appid
        self.secret = secret
        self.url = ""
        self.received: list[Received] = []
        self.paths: list[str] = []
        self.token_requests: list[bool] = []  # force_refresh of each stable_token call
        self.outside_window: set[str] = set()
        self.not_following: set[str] = set()
        # Well-formed openids that are not this account's (another account's, or made up): 40003.
        self.strangers: set[str] = set()
        # Mass sends left; a verified subscription account has one a day (docs/channels.md, "Mass send";
        # https://developers.weixin.qq.com/doc/subscription/guide/product/message/Batch_Sends.html).
        # Tests may set it.
        self.mass_quota = mass_quota
        self.mass_sends: list[MassSend] = []
        self.previews: list[Preview] = []
        self.error_count = 0  # calls answered with a non-zero errcode or an HTTP error
        self.injected: list[tuple[str, str | None]] = []  # (fault, key) of every fault a FaultPlan injected
        self._plan: FaultPlan | None = None
        self._delivered: Counter[tuple[str, str]] = Counter()
        self._closing: asyncio.Event | None = None
        self._valid_tokens: set[str] = set()
        self._stable_token: str | None = None  # what normal-mode stable_token hands out
        self._drafts: dict[str, list[dict[str, Any]]] = {}  # media_id -> the draft's articles
        self._client_msg_ids: set[str] = set()
        self._ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None

    # --- what tests arrange and read ----------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every token stops working, as at expiry: the next stable_token call issues a new one."""
        self._valid_tokens.clear()
        self._stable_token = None

    def invalidate_token(self) -> None:
        """The current token is refused (40001) but normal-mode stable_token still hands it out: only
        force_refresh gets a working one (a token invalidated early, e.g. by a console reset)."""
        self._valid_tokens.clear()

    def texts_to(self, openid: str) -> list[str]:
        return [
            str(call.payload["text"]["content"])
            for call in self.received
            if call.path == CUSTOM_SEND and call.payload.get("touser") == openid
        ]

    def previews_to(self, openid: str) -> list[str]:
        """The media_ids of the drafts previewed to this user, in order."""
        return [preview.media_id for preview in self.previews if preview.openid == openid]

    def draft(self, media_id: str) -> list[dict[str, Any]]:
        """The articles of a draft draft/add made (KeyError for a media_id it never answered)."""
        return self._drafts[media_id]

    def window_closed(self, openid: str) -> None:
        """The user wrote nothing for 48 h: customer-service messages to them get 45015 from now on."""
        self.outside_window.add(openid)

    def faults(self, plan: FaultPlan | None) -> None:
        """Inject the plan's faults into custom/send, mass/sendall and mass/preview from now on (None: no
        more)."""
        if plan is not None:
            plan.check(FAULTS)
        self._plan = plan

    def delivered(self) -> Counter[tuple[str, str]]:
        """Accepted customer-service texts by (openid, content): a count above 1 is a duplicate."""
        return Counter(self._delivered)

    def stats(self) -> dict[str, Any]:
        """The counters, as GET /_fake/stats answers them."""
        per_user: Counter[str] = Counter()
        for (openid, _), count in self._delivered.items():
            per_user[openid] += count
        return {
            "accepted": sum(per_user.values()),
            "errors": self.error_count,
            "duplicates": sum(count - 1 for count in self._delivered.values()),
            "delivered": sorted([openid, count] for openid, count in per_user.items()),
            "mass_sends": [[send.clientmsgid, send.media_id] for send in self.mass_sends],
            "mass_quota": self.mass_quota,
            "injected": dict(Counter(fault for fault, _ in self.injected)),
        }

    # --- the server ---------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._record_path])
        app.router.add_post("/cgi-bin/stable_token", self._wrap(self._stable_token_call, token=False))
        app.router.add_post(CUSTOM_SEND, self._wrap(self._custom_send, faulty=True))
        app.router.add_post("/cgi-bin/draft/add", self._wrap(self._draft_add))
        app.router.add_post(MASS_SENDALL, self._wrap(self._mass_sendall, faulty=True))
        app.router.add_post(MASS_PREVIEW, self._wrap(self._mass_preview, faulty=True))
        app.router.add_get("/_fake/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # "slow" answers still pending go out now, not after the shutdown wait
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _record_path(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/_fake/"):  # the harness's own calls are not the client's
            self.paths.append(request.path)
        return await handler(request)

    def _wrap(self, method: Method, *, token: bool = True, faulty: bool = False) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                payload = await request.json()
            except ValueError:
                return self._error(ApiError(47001, "data format error"))
            except ConnectionError:  # the sender died while sending: no one is left to answer
                return web.Response(status=400)
            if not isinstance(payload, dict):
                return self._error(ApiError(47001, "data format error"))
            late_by = 0.0
            plan = self._plan if faulty else None
            if plan is not None:
                key = _fault_key(request.path, payload)
                fault = plan.draw(key)
                if fault is not None:
                    self.injected.append((fault, key))
                if fault == "drop":
                    if request.transport is not None:
                        request.transport.close()
                    return web.Response()  # never written: the transport is closing
                if fault == "500":
                    self.error_count += 1
                    return web.Response(status=500, text="500 Internal Server Error")
                if fault == "-1":
                    return self._error(ApiError(-1, "system error"))
                if fault == "45009":
                    return self._error(ApiError(45009, "reach max api daily quota limit"))
                if fault == "slow":
                    late_by = plan.slow_seconds
            try:
                if token:
                    self._check_token(request.query.get("access_token"))
                answer: dict[str, Any] = await method(request.path, payload)
            except ApiError as error:
                response = self._error(error)
            else:
                response = web.json_response({"errcode": 0, "errmsg": "ok", **answer})
            if late_by:
                await self._late(late_by)
            return response

        return handle

    def _error(self, error: ApiError) -> web.Response:
        self.error_count += 1
        return web.json_response({"errcode": error.code, "errmsg": error.message})

    async def _late(self, seconds: float) -> None:
        """Wait before answering, but no longer than until the fake closes."""
        assert self._closing is not None
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def _check_token(self, token: str | None) -> None:
        if not token:
            raise ApiError(41001, "access_token missing")
        if token not in self._valid_tokens:
            raise ApiError(40001, "invalid credential, access_token is invalid or not latest")

    async def _stable_token_call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("grant_type") != "client_credential":
            raise ApiError(40002, "invalid grant_type")
        if payload.get("appid") != self.appid:
            raise ApiError(40013, "invalid appid")
        if payload.get("secret") != self.secret:
            raise ApiError(40125, "invalid appsecret")
        force = payload.get("force_refresh") is True
        self.token_requests.append(force)
        if force or self._stable_token is None:
            self._valid_tokens.clear()
            self._stable_token = secrets.token_urlsafe(24)
            self._valid_tokens.add(self._stable_token)
        return {"access_token": self._stable_token, "expires_in": TOKEN_LIFETIME_SECONDS}

    async def _custom_send(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        openid = self._openid(payload)
        if payload.get("msgtype") != "text":
            raise ApiError(40008, "invalid message type")  # the only type this fake knows
        text = payload.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        if not isinstance(content, str) or not content:
            raise ApiError(44003, "empty news data")
        if len(content.encode()) > MAX_TEXT_BYTES:
            raise ApiError(45002, "content size out of limit")
        if openid in self.not_following:
            raise ApiError(43004, "require subscribe")
        if openid in self.outside_window:
            raise ApiError(45015, "response out of time limit or subscription is canceled")
        self.received.append(Received(path, payload))
        self._delivered[(openid, content)] += 1
        return {}

    async def _draft_add(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        articles = payload.get("articles")
        if not isinstance(articles, list) or not articles:
            raise ApiError(44003, "empty news data")
        for article in articles:
            if not isinstance(article, dict) or not all(
                article.get(name) for name in ("title", "content", "thumb_media_id")
            ):
                raise ApiError(40007, "invalid media_id")
        media_id = f"media-{next(self._ids)}"
        self._drafts[media_id] = articles
        self.received.append(Received(path, payload))
        return {"media_id": media_id}

    async def _mass_sendall(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        mpnews = payload.get("mpnews")
        media_id = mpnews.get("media_id") if isinstance(mpnews, dict) else None
        if media_id not in self._drafts:
            raise ApiError(40007, "invalid media_id")
        client_msg_id = payload.get("clientmsgid")
        if isinstance(client_msg_id, str) and client_msg_id in self._client_msg_ids:
            raise ApiError(45065, "clientmsgid exist")
        if self.mass_quota <= 0:
            raise ApiError(45028, "has no masssend quota")
        self.mass_quota -= 1
        if isinstance(client_msg_id, str):
            self._client_msg_ids.add(client_msg_id)
        self.received.append(Received(path, payload))
        message_id = next(self._ids)
        self.mass_sends.append(
            MassSend(client_msg_id if isinstance(client_msg_id, str) else None, media_id, message_id)
        )
        return {"errmsg": "send job submission success", "msg_id": message_id, "msg_data_id": message_id}

    async def _mass_preview(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("msgtype") != "mpnews":
            raise ApiError(40008, "invalid message type")  # the only type this fake previews
        mpnews = payload.get("mpnews")
        media_id = mpnews.get("media_id") if isinstance(mpnews, dict) else None
        if not isinstance(media_id, str) or media_id not in self._drafts:
            raise ApiError(40007, "invalid media_id")
        openid = self._openid(payload)
        if openid in self.not_following:
            raise ApiError(43004, "require subscribe")
        self.received.append(Received(path, payload))
        message_id = next(self._ids)
        self.previews.append(Preview(openid, media_id, message_id))
        return {"errmsg": "preview success", "msg_id": message_id}

    def _openid(self, payload: dict[str, Any]) -> str:
        """The request's `touser`, when it is a well-formed openid of this account (else 40003)."""
        openid = payload.get("touser")
        if not isinstance(openid, str) or not _OPENID.fullmatch(openid) or openid in self.strangers:
            raise ApiError(40003, "invalid openid")
        return openid


def _fault_key(path: str, payload: dict[str, Any]) -> str | None:
    """What a request is about, for FaultPlan.draw: the user, or the broadcast."""
    if path in (CUSTOM_SEND, MASS_PREVIEW):
        touser = payload.get("touser")
        return touser if isinstance(touser, str) else None
    client_msg_id = payload.get("clientmsgid")
    if isinstance(client_msg_id, str):
        return client_msg_id
    mpnews = payload.get("mpnews")
    media_id = mpnews.get("media_id") if isinstance(mpnews, dict) else None
    return media_id if isinstance(media_id, str) else None


@asynccontextmanager
async def running_fake_wechat(
    appid: str = APPID, secret: str = SECRET, port: int = 0, *, mass_quota: int = 1
) -> AsyncIterator[FakeWeChatApi]:
    fake = FakeWeChatApi(appid, secret, mass_quota=mass_quota)
    await fake.start(port)
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_wechat() -> AsyncIterator[FakeWeChatApi]:
    """A fake WeChat API server on a free loopback port, for APPID and SECRET."""
    async with running_fake_wechat() as fake:
        yield fake
