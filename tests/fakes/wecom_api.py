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

What every robot fake records and how it plays the shared faults is in tests/fakes/robot_api.py:
`received` holds (key, body) of every request to the hook, `errors` the refusals as (key, errcode, errmsg)
and `accepted` the accepted bodies per key; `contents(key)` gives their markdown text. Besides the shared
faults ("500", "drop", "slow"), `faults(FaultPlan)` injects "45009" (the rate answer though under the
rate; nothing stored) and "-1" (系统繁忙; nothing stored).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.robot_api import SHARED_FAULTS, Refused, Robot, RobotFake, Window, running

SEND_PATH = "/cgi-bin/webhook/send"
MAX_MARKDOWN_BYTES = 4096  # 消息推送配置说明: "markdown内容，最长不超过4096个字节，必须是utf8编码"
MAX_TEXT_BYTES = 2048  # same page: "文本内容，最长不超过2048个字节，必须是utf8编码"
PER_WINDOW = 20  # same page: "每个机器人发送的消息不能超过20条/分钟"
WINDOW_SECONDS = 60.0
FAULTS = (*SHARED_FAULTS, "45009", "-1")
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


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_window: int = PER_WINDOW
    window: float = WINDOW_SECONDS


class FakeWeCom(RobotFake[Robot]):
    """The fake server's state. `url` is its root, to be given to WeComSender as its API root."""

    FAULTS: ClassVar[tuple[str, ...]] = FAULTS

    def __init__(self) -> None:
        super().__init__()
        self.rate_limit: RateLimit | None = RateLimit()
        self._hints = itertools.count(1653710540075724015410106)

    # --- what tests arrange and read ----------------------------------------------------------------

    def add_robot(self, key: str) -> None:
        self.robots[key] = Robot()

    def disable_robot(self, key: str) -> None:
        self.robots[key].enabled = False

    def limit_rate(self, per_window: int = PER_WINDOW, window: float = WINDOW_SECONDS) -> None:
        """Another per-robot limit or window from now on; the windows start afresh."""
        self.rate_limit = RateLimit(per_window, window)
        for robot in self.robots.values():
            robot.arrivals.clear()

    def lift_rate_limit(self) -> None:
        self.rate_limit = None

    def contents(self, key: str) -> list[str]:
        """The markdown (or text) content of every message accepted for one robot, in order."""
        return [str(body[body["msgtype"]]["content"]) for body in self.accepted.get(key, [])]

    # --- the platform -------------------------------------------------------------------------------

    def windows(self) -> tuple[Window, ...]:
        limit = self.rate_limit
        return () if limit is None else ((limit.per_window, limit.window),)

    def _routes(self, app: web.Application) -> None:
        app.router.add_post(SEND_PATH, self._send)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        keys = request.query.getall("key", [])
        return await self._hook(request, keys[0] if len(keys) == 1 else None)

    def _inject(self, fault: str, key: str | None) -> web.StreamResponse:
        return self._refuse(key, Refused(TOO_FAST if fault == "45009" else BUSY))

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
        now = self.window_clock()
        if self._over_limit(robot, now):
            self.throttled += 1
            raise Refused(TOO_FAST)
        check_message(body)
        self._store(key, robot, body, now)

    def _answer(self, refused: Refused | None) -> web.StreamResponse:
        if refused is None:
            return web.json_response(OK)
        errmsg = (
            f"{refused.msg}, hint: [{next(self._hints)}], from ip: 127.0.0.1, more info at "
            f"https://open.work.weixin.qq.com/devtool/query?e={refused.code}"
        )
        return web.json_response({"errcode": refused.code, "errmsg": errmsg})


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
    async with running(fake, port):
        yield fake
