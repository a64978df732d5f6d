"""A fake Feishu custom-bot webhook server: an aiohttp app on a free loopback port.

Serves POST /open-apis/bot/v2/hook/{token} as open.feishu.cn does and answers in its JSON shape:
{"code": 0, "msg": "success", "data": {}, "StatusCode": 0, "StatusMessage": "success"} on success, and
{"code": N, "msg": "...", "data": {}} otherwise. What it checks, as the real one does (source: 自定义机器人
使用指南, https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot; the codes marked "observed" are
not in the guide but in what public clients record of the platform's answers):

- the request body: at most 20,000 bytes (the guide's "20 KB", its smaller reading) and a JSON object,
  else 9499 "Bad Request" (HTTP 400, observed);
- the token: a bot `add_robot` made and `remove_robot` has not removed, else 19001 "param invalid:
  incoming webhook access token invalid" (observed); a bot turned off: 19007 "Bot Not Enabled" (observed);
- the per-bot rate limits, 5 a second and 100 a minute, in sliding windows over the accepted requests'
  arrival times (`limit_rate` sets other numbers and windows, None lifts them): 9499 "too many request",
  HTTP 400 (observed);
- a bot with a secret: "timestamp" (Unix seconds, a string or an integer) within 3600 s of the fake's
  clock, and "sign" = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b"")), else 19021 "sign match
  fail or timestamp is not within one hour from current time";
- a bot with keywords: one of them in a text or title value (not in an href), else 19024 "Key Words Not
  Found";
- the message shape of the guide's examples (text, post, image, share_chat, interactive): a post's
  paragraphs hold only the documented nodes with their documented fields (text {text, un_escape?},
  a {text, href}, at {user_id, user_name?}, img {image_key}), an a's href is an http(s) URL; an
  interactive message carries `card` (an object) and no `content`; else 9499 "Bad Request".

The guide shows only the bodies of its errors; they come with HTTP 200 here (9499 with HTTP 400, as
public clients record it). What every robot fake records and how it plays the shared faults is in
tests/fakes/robot_api.py: `received` holds (token, body) of every request with a JSON object body,
`errors` the refusals as (token, code, msg) and `accepted` the accepted bodies per token; `messages(token)`
gives them without "timestamp" and "sign", as a FeishuPayload's messages are, and `body_sizes` has the
size of every hook request's body. Besides the shared faults ("500", "drop", "slow"), `faults(FaultPlan)`
injects "429" (HTTP 429 with Retry-After and no JSON code; nothing stored) and "11232" (the guide's
system-pressure rate limit; nothing stored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aiohttp import web

from tests.fakes.robot_api import SHARED_FAULTS, Refused, Robot, RobotFake, Window, running

HOOK = "/open-apis/bot/v2/hook/"
MAX_BODY_BYTES = 20_000  # the guide: "请求体的数据大小不能超过 20 KB"
PER_SECOND = 5  # the guide: "单租户单机器人 100 次/分钟，5 次/秒"
PER_MINUTE = 100
TIMESTAMP_TOLERANCE_SECONDS = 3600  # the guide: "距当前时间不超过 1 小时（3600 秒）"
FAULTS = (*SHARED_FAULTS, "429", "11232")
RETRY_AFTER_SECONDS = 2  # what an injected 429 asks to wait

TOKEN = "5e3d587e-d78e-4a07-bd07-265f269f86fd"  # a UUID, as real hook tokens are
OTHER_TOKEN = "0f9c2b1a-7d4e-4c3b-9a8f-1e2d3c4b5a69"
SECRET = "nIMtb7r3N9pkXyXdtAbx6e"

SUCCESS = {"code": 0, "msg": "success", "data": {}, "StatusCode": 0, "StatusMessage": "success"}
BAD_REQUEST = (9499, "Bad Request")
TOO_MANY = (9499, "too many request")
TOKEN_INVALID = (19001, "param invalid: incoming webhook access token invalid")
NOT_ENABLED = (19007, "Bot Not Enabled")
SIGN_FAIL = (19021, "sign match fail or timestamp is not within one hour from current time")
NO_KEYWORD = (19024, "Key Words Not Found")
RATE_LIMITED = (11232, "frequency limited")  # the guide names the code, not its msg

# The guide's node tags and their fields: (required, optional).
POST_NODES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "text": (frozenset({"text"}), frozenset({"un_escape"})),
    "a": (frozenset({"text", "href"}), frozenset()),
    "at": (frozenset({"user_id"}), frozenset({"user_name"})),
    "img": (frozenset({"image_key"}), frozenset()),
}
POST_LOCALES = ("zh_cn", "en_us")


@dataclass
class Bot(Robot):
    secret: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: int = PER_SECOND
    per_minute: int = PER_MINUTE
    second: float = 1.0
    minute: float = 60.0


class FakeFeishu(RobotFake[Bot]):
    """The fake server's state. `url` is its root, to be given to FeishuSender as its API root."""

    FAULTS: ClassVar[tuple[str, ...]] = FAULTS

    def __init__(self) -> None:
        super().__init__()
        self.rate_limit: RateLimit | None = RateLimit()
        self.clock: Callable[[], float] = time.time  # the timestamps' clock (Unix seconds)
        self.body_sizes: list[int] = []  # bytes of every hook request body, as received

    # --- what tests arrange and read ----------------------------------------------------------------

    def add_robot(
        self, token: str, secret: str | None = None, *, keywords: Iterable[str] = (), enabled: bool = True
    ) -> None:
        self.robots[token] = Bot(enabled=enabled, secret=secret, keywords=tuple(keywords))

    def limit_rate(self, limit: RateLimit | None) -> None:
        """Other per-bot limits and windows from now on (None: none at all)."""
        self.rate_limit = limit
        for robot in self.robots.values():
            robot.arrivals.clear()

    def messages(self, key: str) -> list[dict[str, Any]]:
        """The accepted bodies for one bot, without the signature fields."""
        return [
            {name: value for name, value in body.items() if name not in ("timestamp", "sign")}
            for body in self.accepted.get(key, [])
        ]

    # --- the platform -------------------------------------------------------------------------------

    def windows(self) -> tuple[Window, ...]:
        limit = self.rate_limit
        return () if limit is None else ((limit.per_second, limit.second), (limit.per_minute, limit.minute))

    def _routes(self, app: web.Application) -> None:
        app.router.add_post(HOOK + "{token}", self._send)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        return await self._hook(request, request.match_info["token"])

    def _arrived(self, raw: bytes) -> None:
        self.body_sizes.append(len(raw))

    def _inject(self, fault: str, key: str | None) -> web.StreamResponse:
        if fault == "429":
            return web.Response(
                status=429, text="Too Many Requests", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        return self._refuse(key, Refused(RATE_LIMITED))

    def _accept(self, key: str | None, raw: bytes) -> None:
        assert key is not None  # the route always has one
        if len(raw) > MAX_BODY_BYTES:
            raise Refused(BAD_REQUEST, 400)
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused(BAD_REQUEST, 400) from None
        if not isinstance(body, dict):
            raise Refused(BAD_REQUEST, 400)
        self.received.append((key, body))
        robot = self.robots.get(key)
        if robot is None:
            raise Refused(TOKEN_INVALID)
        if not robot.enabled:
            raise Refused(NOT_ENABLED)
        now = self.window_clock()
        if self._over_limit(robot, now):
            self.throttled += 1
            raise Refused(TOO_MANY, 400)
        if robot.secret is not None:
            self._check_signature(body, robot.secret)
        check_message(body)
        if robot.keywords and not any(keyword in text for text in _texts(body) for keyword in robot.keywords):
            raise Refused(NO_KEYWORD)
        self._store(key, robot, body, now)

    def _check_signature(self, body: dict[str, Any], secret: str) -> None:
        timestamp, signature = body.get("timestamp"), body.get("sign")
        seconds = str(timestamp) if type(timestamp) in (int, str) else ""
        if not seconds.isdigit() or not isinstance(signature, str):
            raise Refused(SIGN_FAIL)
        if abs(self.clock() - int(seconds)) > TIMESTAMP_TOLERANCE_SECONDS:
            raise Refused(SIGN_FAIL)
        key = f"{seconds}\n{secret}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            raise Refused(SIGN_FAIL)

    def _answer(self, refused: Refused | None) -> web.StreamResponse:
        if refused is None:
            return web.json_response(SUCCESS)
        return web.json_response(
            {"code": refused.code, "msg": refused.msg, "data": {}}, status=refused.status
        )


def check_message(body: dict[str, Any]) -> None:
    """The guide's message shapes, or Refused(9499 Bad Request)."""
    msg_type = body.get("msg_type")
    content = body.get("content")
    if msg_type == "interactive":
        if not isinstance(body.get("card"), dict) or "content" in body:
            raise Refused(BAD_REQUEST, 400)
        return
    if not isinstance(content, dict):
        raise Refused(BAD_REQUEST, 400)
    if msg_type == "text":
        ok = isinstance(content.get("text"), str) and bool(content["text"])
    elif msg_type == "image":
        ok = isinstance(content.get("image_key"), str) and bool(content["image_key"])
    elif msg_type == "share_chat":
        ok = isinstance(content.get("share_chat_id"), str) and bool(content["share_chat_id"])
    elif msg_type == "post":
        ok = _post_ok(content.get("post"))
    else:
        ok = False
    if not ok:
        raise Refused(BAD_REQUEST, 400)


def _post_ok(post: Any) -> bool:
    if not isinstance(post, dict) or not post or set(post) - set(POST_LOCALES):
        return False
    for locale in post.values():
        if not isinstance(locale, dict) or set(locale) - {"title", "content"}:
            return False
        if not isinstance(locale.get("title", ""), str):
            return False
        paragraphs = locale.get("content")
        if not isinstance(paragraphs, list) or not paragraphs:
            return False
        for paragraph in paragraphs:
            if not isinstance(paragraph, list) or not all(_node_ok(node) for node in paragraph):
                return False
    return True


def _node_ok(node: Any) -> bool:
    if not isinstance(node, dict) or node.get("tag") not in POST_NODES:
        return False
    required, optional = POST_NODES[node["tag"]]
    fields = set(node) - {"tag"}
    if not required <= fields or fields - required - optional:
        return False
    if node["tag"] == "text" and not isinstance(node["text"], str):
        return False
    if node["tag"] == "a":
        href = node["href"]
        parts = urlsplit(href) if isinstance(href, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        if not isinstance(node["text"], str):
            return False
    return True


def _texts(body: dict[str, Any]) -> Iterator[str]:
    """The values keywords are looked for in: text and title (the guide: not href)."""
    stack: list[Any] = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in ("text", "title", "content") and isinstance(inner, str):
                    yield inner
                elif key != "href":
                    stack.append(inner)
        elif isinstance(value, list):
            stack.extend(value)


@asynccontextmanager
async def running_fake_feishu(port: int = 0) -> AsyncIterator[FakeFeishu]:
    async with running(FakeFeishu(), port) as fake:
        yield fake
