"""A fake WeChat API server: an aiohttp app on a free loopback port.

Answers as api.weixin.qq.com does: HTTP 200 with JSON, {"errcode": 0, ...} on success and
{"errcode": N, "errmsg": "..."} otherwise. What it checks, as the real one does (sources: the official
docs as summarised in ../shared/notes/channels.md, "WeChat Official Account"):

- /cgi-bin/stable_token: grant_type client_credential (40002), the AppID (40013) and secret (40125);
  issues a token valid 7200 s; normal mode hands out the current token while it is valid, force_refresh
  issues a new one and invalidates the old;
- every other call: access_token present (41001) and valid (40001);
- /cgi-bin/message/custom/send: a well-formed openid (40003), users outside the 48 h window (`outside_window`:
  45015) or not following (`not_following`: 43004), text content at most 2048 bytes of UTF-8 (45002);
- /cgi-bin/draft/add: at least one article with title, content and thumb_media_id (answers a media_id);
- /cgi-bin/message/mass/sendall: a known media_id (40007), a repeated clientmsgid (45065), the daily quota
  (`mass_quota`, 1 by default: 45028).

Successful sends are recorded in `received` (path and JSON payload); `token_requests` records the
force_refresh flag of each stable_token call (never the secret); `paths` lists every request's path, known
routes or not (a test can check that nothing was fetched at all).
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

APPID = "wx0123456789abcdef"
SECRET = "fake-app-secret-0123456789abcdef"
TOKEN_LIFETIME_SECONDS = 7200
MAX_TEXT_BYTES = 2048  # customer-service text; longer is 45002 (channels.md)
_OPENID = re.compile(r"[A-Za-z0-9_-]{28,64}")

Method = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    payload: dict[str, Any]


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FakeWeChatApi:
    def __init__(self, appid: str = APPID, secret: str = SECRET) -> None:
        self.appid = appid
        self.secret = secret
        self.url = ""
        self.received: list[Received] = []
        self.paths: list[str] = []
        self.token_requests: list[bool] = []  # force_refresh of each stable_token call
        self.outside_window: set[str] = set()
        self.not_following: set[str] = set()
        self.mass_quota = 1  # a verified subscription account: one mass send a day
        self._valid_tokens: set[str] = set()
        self._stable_token: str | None = None  # what normal-mode stable_token hands out
        self._media_ids: set[str] = set()
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
            if call.path == "/cgi-bin/message/custom/send" and call.payload.get("touser") == openid
        ]

    # --- the server ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record_path])
        app.router.add_post("/cgi-bin/stable_token", self._wrap(self._stable_token_call, token=False))
        app.router.add_post("/cgi-bin/message/custom/send", self._wrap(self._custom_send))
        app.router.add_post("/cgi-bin/draft/add", self._wrap(self._draft_add))
        app.router.add_post("/cgi-bin/message/mass/sendall", self._wrap(self._mass_sendall))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _record_path(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.paths.append(request.path)
        return await handler(request)

    def _wrap(self, method: Method, *, token: bool = True) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                payload = await request.json()
            except ValueError:
                return _error(ApiError(47001, "data format error"))
            if not isinstance(payload, dict):
                return _error(ApiError(47001, "data format error"))
            try:
                if token:
                    self._check_token(request.query.get("access_token"))
                answer: dict[str, Any] = await method(request.path, payload)
            except ApiError as error:
                return _error(error)
            return web.json_response({"errcode": 0, "errmsg": "ok", **answer})

        return handle

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
        openid = payload.get("touser")
        if not isinstance(openid, str) or not _OPENID.fullmatch(openid):
            raise ApiError(40003, "invalid openid")
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
        self._media_ids.add(media_id)
        self.received.append(Received(path, payload))
        return {"media_id": media_id}

    async def _mass_sendall(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        mpnews = payload.get("mpnews")
        media_id = mpnews.get("media_id") if isinstance(mpnews, dict) else None
        if media_id not in self._media_ids:
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
        return {"errmsg": "send job submission success", "msg_id": message_id, "msg_data_id": message_id}


def _error(error: ApiError) -> web.Response:
    return web.json_response({"errcode": error.code, "errmsg": error.message})


@asynccontextmanager
async def running_fake_wechat(appid: str = APPID, secret: str = SECRET) -> AsyncIterator[FakeWeChatApi]:
    fake = FakeWeChatApi(appid, secret)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_wechat() -> AsyncIterator[FakeWeChatApi]:
    """A fake WeChat API server on a free loopback port, for APPID and SECRET."""
    async with running_fake_wechat() as fake:
        yield fake
