"""Pushing one message to a group robot over aiohttp, and reading its answer as a broadcast must.

Only `{api_url}/cgi-bin/webhook/send?key={key}` is ever requested: the API root is configuration, the key
is checked to be a bare key (channels/wecom/address.py) before it joins the query, and redirects are not
followed, so no stored address can make the sender call anywhere else.

The robot answers {"errcode": 0, "errmsg": "ok"} on success and {"errcode": N, "errmsg": "..."} otherwise,
with HTTP 200 either way (消息推送配置说明 shows the request only; the answer's shape is 全局错误码's
"errcode/errmsg", https://developer.work.weixin.qq.com/document/path/90313). How each answer is read:

- errcode 0 -> SENT;
- 45009 "接口调用超过限制" (the robot answers "api freq out of limit" over its 20 messages a minute)
  and 45033 "接口并发调用超过限制" -> RETRY with retry_after: 全局错误码 on 45009, "频率拦截时长一般与调用的
  限制时长相同，比如说是分钟级别的限制，则在中频率后的1分钟后自动解除", so a full minute frees the robot;
- -1 "系统繁忙" ("服务器暂不可用，建议稍候重试") -> RETRY;
- 93000 "机器人webhookurl不合法或者机器人已经被移除出群" (errmsg "invalid webhook url"), 93004 "机器人被停用",
  93008 "不在群里" -> BLOCKED: this robot cannot post to its group any more;
- 40058 "不合法的参数" (the robot's errmsg: "markdown.content exceed max length 4096"), 44004 "文本消息content
  参数为空" (errmsg "empty content"), 40008 "不合法的msgtype参数", 45002 "消息内容大小超过限制" -> FAILED: a
  content bug that no retry fixes; any other errcode -> FAILED too, with the code in the error;
- HTTP 5xx or 429 without an errcode, a dropped connection, a connect timeout -> RETRY;
- no answer in time once the request went out -> UNCERTAIN (it may have been delivered; never resent);
- HTTP 200 without a readable errcode -> UNCERTAIN: the robot may have taken it;
- a 404 or a redirect from the API root -> ChannelDown: the root is wrong, no robot can be reached.

A dropped connection is RETRY, not UNCERTAIN: a front end that closes without answering has not handed the
message on (the fake server, tests/fakes/wecom_api.py, stores nothing in that case), and re-sending one
message of an issue twice is a lesser harm than losing it. Errors are one line and never hold the key:
aiohttp's own messages hold the URL, and the key is in its query.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from channels.base import PushResult, PushStatus, utf8_bytes
from channels.pacing import RobotPacer
from channels.webhook import Answer, JsonPoster, api_root, by_status, json_object, one_line, retry_after
from channels.wecom.address import SEND_PATH, check_key
from channels.wecom.pacing import robot_pacer
from channels.wecom.payload import WECOM_MAX_CONTENT_BYTES, WECOM_MAX_TEXT_BYTES
from content.errors import BadInput

OFFICIAL_API_URL = "https://qyapi.weixin.qq.com"
# A robot answers in well under a second; after this long the answer is given up on and the message counts
# as "maybe delivered".
SEND_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
# 全局错误码, 45009: a minute-long limit is lifted a minute after it was hit (see the module doc).
RATE_LIMITED_RETRY_SECONDS = 60.0

CODE_OK = 0
CODE_BUSY = -1
RETRY_CODES = {
    45009: "api freq out of limit",
    45033: "too many concurrent calls",
}
BLOCKED_CODES = {
    93000: "invalid webhook url (the robot was removed from its group)",
    93004: "the robot is disabled",
    93008: "the robot is not in the group",
}
FAILED_CODES = {
    40008: "invalid msgtype",
    40058: "invalid parameter (content over 4096 bytes, or a malformed body)",
    44004: "empty content",
    45002: "content over the size limit",
}
CONTENT_LIMITS = {"markdown": WECOM_MAX_CONTENT_BYTES, "text": WECOM_MAX_TEXT_BYTES}


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact JSON in UTF-8, CJK unescaped (3 bytes a character instead of 6 for \\uXXXX)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class WeComSender:
    """Pushes to group robots through one connection pool (its own, or a session given to it, which it
    then leaves open); `close()` releases its own. `push` itself does not wait: `pacer` (WeCom's limit
    unless given) is what a broadcast waits on before each push, and holds a robot that asked to wait."""

    name = "wecom"

    def __init__(
        self,
        api_url: str = OFFICIAL_API_URL,
        *,
        timeout: float = SEND_TIMEOUT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        connections: int = 64,
        session: aiohttp.ClientSession | None = None,
        pacer: RobotPacer | None = None,
    ) -> None:
        self._url = api_root(api_url, "WeCom") + SEND_PATH
        self.pacer = pacer if pacer is not None else robot_pacer()
        self._poster = JsonPoster(
            timeout=timeout, connect_timeout=connect_timeout, connections=connections, session=session
        )

    async def close(self) -> None:
        await self._poster.close()

    async def push(self, key: str, body: Mapping[str, Any]) -> PushResult:
        """POST one body (a message of WeComPayload.messages) to one robot."""
        try:
            key = check_key(key)
        except BadInput as error:
            return PushResult(PushStatus.FAILED, error=error.message)
        refused = _refused(body)
        if refused is not None:
            return PushResult(PushStatus.FAILED, error=f"{refused}: not sent")
        answer = await self._poster.post(self._url, encode_body(body), params={"key": key})
        return answer if isinstance(answer, PushResult) else _result(answer, key)


def _refused(body: Mapping[str, Any]) -> str | None:
    """Why the robot would refuse this body for its content, or None: checked here so that a content bug
    does not use up one of the robot's 20 messages a minute."""
    msgtype = body.get("msgtype")
    if not isinstance(msgtype, str) or msgtype not in CONTENT_LIMITS:
        return None  # other message types: the robot decides
    limit = CONTENT_LIMITS[msgtype]
    inner = body.get(msgtype)
    content = inner.get("content") if isinstance(inner, Mapping) else None
    if not isinstance(content, str) or not content.strip():
        return f"{msgtype} body without content"
    size = utf8_bytes(content)
    if size > limit:
        return f"{msgtype} content of {size} bytes is over {limit}"
    return None


def _result(answer: Answer, key: str) -> PushResult:
    code, message = _code(answer.body)
    message = message.replace(key, "…")
    status = answer.status
    if code is None:
        return by_status(
            answer,
            default_retry=RATE_LIMITED_RETRY_SECONDS,
            channel="wecom",
            platform="WeCom",
            code="an errcode",
        )
    if code == CODE_OK:
        return PushResult(PushStatus.SENT)
    if code in RETRY_CODES:
        return PushResult(
            PushStatus.RETRY,
            error=f"{code} {RETRY_CODES[code]}",
            retry_after=retry_after(answer.retry_after, RATE_LIMITED_RETRY_SECONDS),
        )
    if code == CODE_BUSY:
        return PushResult(PushStatus.RETRY, error="-1 system busy")
    if code in BLOCKED_CODES:
        return PushResult(PushStatus.BLOCKED, error=f"{code} {BLOCKED_CODES[code]}")
    if code in FAILED_CODES:
        return PushResult(PushStatus.FAILED, error=f"{code} {FAILED_CODES[code]}")
    return PushResult(PushStatus.FAILED, error=f"HTTP {status}, errcode {code} {message}".rstrip())


def _code(raw: bytes) -> tuple[int | None, str]:
    """The answer's errcode and the first clause of its errmsg; (None, "") for anything else."""
    answer = json_object(raw)
    code = answer.get("errcode")
    if type(code) is not int:
        return None, ""
    # The robot appends ", hint: [...], from ip: ..., more info at ...": our own address is no news.
    message = str(answer.get("errmsg", "")).split(", hint:")[0]
    return code, one_line(message)
