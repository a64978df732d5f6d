"""A fake WeCom group-robot webhook server: an aiohttp app on a free loopback port.

Serves POST /cgi-bin/webhook/send?key=KEY as qyapi.weixin.qq.com does and answers, with HTTP 200, in its
JSON shape: {"errcode": 0, "errmsg": "ok"} on success, {"errcode": N, "errmsg": "..., hint: [...], from ip:
..., more info at https://open.work.weixin.qq.com/devtool/query?e=N"} otherwise. What it checks, as the
real one does (sources: 消息推送配置说明, https://developer.work.weixin.qq.com/document/path/99110, and
全局错误码, https://developer.work.weixin.qq.com/document/path/90313; the errmsg texts are those public
clients record, see channels/wecom/__init__.py):

- the key: one `add_robot` made and `remove_robot` has not removed, else 93000 "invalid webhook url"
  (a missing key too); a robot `disable_robot` turned off: 93004;
- the per-robot rate, "每个机器人发送的消息不能超过20条/分钟", in a sliding window over the accepted
  messages' arrival times (`limit_rate(per_window, window)` shortens it for tests, None lifts it):
  45009 "api freq out of limit";
- the body: a JSON object (else 40058 "Warning: wrong json format."), a known msgtype (text, markdown,
  markdown_v2, image, news, file, voice, template_card; else 40008 "invalid message type"), and for text
  and markdown an object with a string `content`: empty -> 44004 "empty content", over 4096 bytes of UTF-8
  for markdown (2048 for text) -> 40058 "markdown.content exceed max length 4096. invalid Request
  Parameter", missing -> 40058 "missing markdown" (the last errmsg is not a recorded one).

Every request to the hook is recorded in `received` (key, body), `errors` lists the refusals as (key,
errcode, errmsg) and `accepted` the accepted bodies per key; `contents(key)` gives their markdown text.
`paths` lists every requested path with its query, hook or not.

`faults(FaultPlan)` (tests/fakes/faults.py; key: the robot key) injects into the hook: "500" (HTTP 500, a
non-JSON body; nothing stored), "drop" (the connection closed with no answer; nothing stored), "45009"
(the rate answer though under the rate; nothing stored), "-1" (系统繁忙; nothing stored) and "slow"
(stored, then answered `slow_seconds` late: a client that gives up sooner cannot tell whether it was
delivered).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.faults import FaultPlan

SEND_PATH = "/cgi-bin/webhook/send"
MAX_MARKDOWN_BYTES = 4096  # 消息推送配置说明: "markdown内容，最长不超过4096个字节，必须是utf8编码"
MAX_TEXT_BYTES = 2048  # same page: "文本内容，最长不超过2048个字节，必须是utf8编码"
PER_WINDOW = 20  # same page: "每个机器人发送的消息不能超过20条/分钟"
WINDOW_SECONDS = 60.0
FAULTS = ("500", "drop", "slow", "45009", "-1")
MSGTYPES = ("text", "markdown", "markdown_v2", "image", "news", "file", "voice", "template_card")
CONTENT_LIMITS = {"text": MAX_TEXT_BYTES, "markdown": MAX_MARKDOWN_BYTES, "markdown_v2": MAX_MARKDOWN_BYTES}

KEY = "693a91f6-7a3c-4bc4-97a0-0ec2a1fa5aaa"  # a UUID, as real keys are (the document's, unredacted)
OTHER_KEY = "0f9c2b1a-7d4e-4c3b-9a8f-1e2d3c4b5a69"

OK = {"errcode": 0, "errmsg": "ok"}
BUSY = (-1, "system busy")
WRONG_JSON = (40058, "Warning: wrong json format.")
BAD_MSGTYPE = (40008, "invalid message type")
EMPTY = (44004, "empty content")
TOO_FAST = (45009, "api freq out of limit")
INVALID_KEY = (93000, "invalid webhook url")
DISABLED = (93004, "robot is disabled")


def too_long(msgtype: str, limit: int) -> tuple[int, str]:
    return 40058, f"{msgtype}.content exceed max length {limit}. invalid Request Parameter"


class Refused(Exception):
    def __init__(self, code_msg: tuple[int, str]) -> None:
        super().__init__(code_msg[1])
        self.code, self.msg = code_msg


@dataclass
class Robot:
    enabled: bool = True
    arrivals: deque[float] = field(default_factory=deque)  # accepted messages, oldest first


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_window: int = PER_WINDOW
    window: float = WINDOW_SECONDS


class FakeWeCom:
    """The fake server's state. `url` is its root, to be given to WeComSender as its API root."""

    def __init__(self) -> None:
        self.url = ""
        self.robots: dict[str, Robot] = {}
        self.rate_limit: RateLimit | None = RateLimit()
        self.clock: Callable[[], float] = time.monotonic  # the rate window's clock
        self.received: list[tuple[str | None, Any]] = []
        self.accepted: dict[str, list[dict[str, Any]]] = {}
        self.accepted_at: dict[str, list[float]] = {}
        self.errors: list[tuple[str | None, int, str]] = []
        self.paths: list[str] = []
        self.throttled = 0  # 45009 answers of the rate limit (not injected ones)
        self.injected: list[tuple[str, str | None]] = []  # (fault, key) of every fault a FaultPlan injected
        self._plan: FaultPlan | None = None
        self._hints = itertools.count(1653710540075724015410106)
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # --- what tests arrange and read ----------------------------------------------------------------

    def add_robot(self, key: str) -> None:
        self.robots[key] = Robot()

    def remove_robot(self, key: str) -> None:
        """The robot is removed from its group: its key answers 93000 from now on."""
        self.robots.pop(key, None)

    def disable_robot(self, key: str) -> None:
        self.robots[key].enabled = False

    def limit_rate(self, per_window: int = PER_WINDOW, window: float = WINDOW_SECONDS) -> None:
        """Another per-robot limit or window from now on; the windows start afresh."""
        self.rate_limit = RateLimit(per_window, window)
        for robot in self.robots.values():
            robot.arrivals.clear()

    def lift_rate_limit(self) -> None:
        self.rate_limit = None

    def faults(self, plan: FaultPlan | None) -> None:
        """Inject the plan's faults into the hook from now on (None: no more faults)."""
        if plan is not None:
            plan.check(FAULTS)
        self._plan = plan

    def contents(self, key: str) -> list[str]:
        """The markdown (or text) content of every message accepted for one robot, in order."""
        return [str(body[body["msgtype"]]["content"]) for body in self.accepted.get(key, [])]

    def delivered(self) -> Counter[tuple[str, str]]:
        """Accepted messages by (key, canonical JSON): a count above 1 is a duplicate."""
        return Counter(
            (key, json.dumps(body, sort_keys=True, ensure_ascii=False))
            for key, bodies in self.accepted.items()
            for body in bodies
        )

    def error_codes(self) -> list[int]:
        return [code for _, code, _ in self.errors]

    # --- serving ------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._record_path])
        app.router.add_post(SEND_PATH, self._send)
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
    async def _record_path(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    async def _send(self, request: web.Request) -> web.StreamResponse:
        keys = request.query.getall("key", [])
        key = keys[0] if len(keys) == 1 else None
        try:
            raw = await request.read()
        except ConnectionError:  # the sender died while sending: no one is left to answer
            return web.Response(status=400)
        late_by = 0.0
        plan = self._plan
        fault = plan.draw(key) if plan is not None else None
        if plan is not None and fault is not None:
            self.injected.append((fault, key))
            if fault == "drop":
                if request.transport is not None:
                    request.transport.close()
                return web.Response()  # never written: the transport is closing
            if fault == "500":
                return web.Response(status=500, text="500 Internal Server Error")
            if fault == "45009":
                return self._refuse(key, Refused(TOO_FAST))
            if fault == "-1":
                return self._refuse(key, Refused(BUSY))
            late_by = plan.slow_seconds
        try:
            self._accept(key, raw)
        except Refused as refused:
            return self._refuse(key, refused)
        if late_by:
            await self._late(late_by)
        return web.json_response(OK)

    def _accept(self, key: str | None, raw: bytes) -> None:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        self.received.append((key, body))
        robot = self.robots.get(key) if key is not None else None
        if robot is None or key is None:
            raise Refused(INVALID_KEY)
        if not robot.enabled:
            raise Refused(DISABLED)
        if not isinstance(body, dict):
            raise Refused(WRONG_JSON)
        now = self.clock()
        if self._over_limit(robot, now):
            self.throttled += 1
            raise Refused(TOO_FAST)
        check_message(body)
        robot.arrivals.append(now)
        self.accepted.setdefault(key, []).append(body)
        self.accepted_at.setdefault(key, []).append(now)

    def _over_limit(self, robot: Robot, now: float) -> bool:
        limit = self.rate_limit
        if limit is None:
            return False
        arrivals = robot.arrivals
        while arrivals and arrivals[0] <= now - limit.window:
            arrivals.popleft()
        return len(arrivals) >= limit.per_window

    def _refuse(self, key: str | None, refused: Refused) -> web.Response:
        self.errors.append((key, refused.code, refused.msg))
        errmsg = (
            f"{refused.msg}, hint: [{next(self._hints)}], from ip: 127.0.0.1, more info at "
            f"https://open.work.weixin.qq.com/devtool/query?e={refused.code}"
        )
        return web.json_response({"errcode": refused.code, "errmsg": errmsg})

    async def _late(self, seconds: float) -> None:
        """Wait before answering, but no longer than until the fake closes."""
        assert self._closing is not None
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass


def check_message(body: dict[str, Any]) -> None:
    """The document's message shapes for text and markdown, or Refused with the robot's errcode."""
    msgtype = body.get("msgtype")
    if msgtype not in MSGTYPES:
        raise Refused(BAD_MSGTYPE)
    limit = CONTENT_LIMITS.get(msgtype)
    if limit is None:
        return  # the other types are not what this project sends
    inner = body.get(msgtype)
    if not isinstance(inner, dict) or not isinstance(inner.get("content"), str):
        raise Refused((40058, f"missing {msgtype}"))
    content: str = inner["content"]
    if not content.strip():
        raise Refused(EMPTY)
    if len(content.encode("utf-8")) > limit:
        raise Refused(too_long(msgtype, limit))


@asynccontextmanager
async def running_fake_wecom(*keys: str, port: int = 0) -> AsyncIterator[FakeWeCom]:
    fake = FakeWeCom()
    for key in keys:
        fake.add_robot(key)
    await fake.start(port)
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_wecom() -> AsyncIterator[FakeWeCom]:
    """A fake WeCom webhook server on a free loopback port, with the robots KEY and OTHER_KEY."""
    async with running_fake_wecom(KEY, OTHER_KEY) as fake:
        yield fake
