"""Pushing one request body to a custom bot over aiohttp, and reading its answer as a broadcast must.

Only `{api_url}/open-apis/bot/v2/hook/{token}` is ever requested: the API root is configuration, the token
is checked to be a bare token (channels/feishu/address.py) before it joins the path, and redirects are
not followed, so no stored address can make the sender call anywhere else.

Answers (自定义机器人使用指南 unless said otherwise; see the package doc for the sources):

- code 0 -> SENT (the guide's success answer: {"code": 0, "msg": "success", "data": {}, plus the legacy
  "StatusCode": 0, "StatusMessage": "success"});
- code 11232 (rate limiting "因系统压力导致的 11232 限流错误"), code 9499 with msg "too many request" (not in
  the guide; what the platform answers over the 5/s and 100/min limits, as public clients record it) and
  HTTP 429 without a code -> RETRY, with retry_after;
- code 9499 "Bad Request" (a body not shaped like the examples, or over 20 KB) -> FAILED: a content bug;
- code 19021 (signature or timestamp refused) -> FAILED: this bot's stored secret is wrong, or our clock
  is an hour off; never BLOCKED, since a clock error would otherwise block every signed bot at once;
- code 19022 (IP not in the bot's allow list) and 19024 (none of the bot's keywords in the message)
  -> FAILED: the group's owner must change the bot's settings; the next issue may pass;
- code 19001 "param invalid: incoming webhook access token invalid" and 19007 "Bot Not Enabled" (not in
  the guide; recorded by public clients) -> BLOCKED: the bot was removed from its group, or turned off;
- HTTP 5xx without a known code, a dropped connection, a connect timeout -> RETRY (nothing was taken);
- no answer in time once the request went out -> UNCERTAIN (it may have been delivered; never resent);
- a 404 or a redirect from the API root -> ChannelDown: the root is wrong, no bot can be reached.

Errors are one line and never hold the token or the secret (aiohttp's own messages hold the URL, and the
platform's 19001 message has been seen to repeat the token).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from channels.base import PushResult, PushStatus
from channels.feishu.address import TOKEN, check_secret, hook_path
from channels.feishu.pacing import robot_pacer
from channels.feishu.payload import FEISHU_MAX_BODY_BYTES, encode_body
from channels.feishu.signing import signature_fields
from channels.pacing import RobotPacer
from channels.webhook import Answer, JsonPoster, api_root, by_status, json_object, one_line, retry_after
from content.errors import BadInput

OFFICIAL_API_URL = "https://open.feishu.cn"
# A custom bot answers in well under a second; after this long the answer is given up on and the
# message counts as "maybe delivered".
SEND_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
# The guide does not say how long a rate-limited bot must wait. A minute is the longer of its two windows
# (100 a minute, 5 a second): after it, neither can still be full of our own earlier pushes.
RATE_LIMITED_RETRY_SECONDS = 60.0

CODE_OK = 0
CODE_BAD_REQUEST_OR_RATE = 9499  # "Bad Request" (guide) or "too many request" (observed)
CODE_RATE_LIMITED = 11232
CODE_TOKEN_INVALID = 19001
CODE_BOT_NOT_ENABLED = 19007
CODE_SIGN_MISMATCH = 19021
CODE_IP_NOT_ALLOWED = 19022
CODE_KEYWORDS_NOT_FOUND = 19024
TOO_MANY_REQUEST = "too many request"
FAILED_CODES = {
    CODE_SIGN_MISMATCH: "signature refused (wrong secret for this bot, or the clock is off by an hour)",
    CODE_IP_NOT_ALLOWED: "this server's IP is not in the bot's allow list",
    CODE_KEYWORDS_NOT_FOUND: "the message holds none of the bot's keywords",
}
BLOCKED_CODES = {
    CODE_TOKEN_INVALID: "the hook token is not valid (the bot was removed)",
    CODE_BOT_NOT_ENABLED: "the bot is turned off",
}


class FeishuSender:
    """Pushes to custom bots through one connection pool; `close()` releases it. `push` itself does not
    wait: `pacer` (Feishu's limits unless given) is what a broadcast waits on before each push, and holds
    a bot that asked to wait."""

    name = "feishu"

    def __init__(
        self,
        api_url: str = OFFICIAL_API_URL,
        *,
        timeout: float = SEND_TIMEOUT_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        connections: int = 64,
        clock: Callable[[], float] = time.time,
        pacer: RobotPacer | None = None,
    ) -> None:
        self._root = api_root(api_url, "Feishu")
        self.pacer = pacer if pacer is not None else robot_pacer()
        self._poster = JsonPoster(timeout=timeout, connect_timeout=connect_timeout, connections=connections)
        self._clock = clock  # wall clock: the platform checks the timestamp against its own

    async def close(self) -> None:
        await self._poster.close()

    async def push(self, token: str, body: Mapping[str, Any], secret: str | None = None) -> PushResult:
        """POST one body (a message of FeishuPayload.messages) to one bot, signed when it has a secret."""
        try:
            path = hook_path(token)
            secret = check_secret(secret)
        except BadInput as error:
            return PushResult(PushStatus.FAILED, error=error.message)
        if "timestamp" in body or "sign" in body:
            raise ValueError("the body must not carry timestamp or sign: the sender adds them")
        sent = dict(body)
        if secret is not None:
            sent = {**signature_fields(secret, int(self._clock())), **sent}
        raw = encode_body(sent)
        if len(raw) > FEISHU_MAX_BODY_BYTES:
            return PushResult(
                PushStatus.FAILED, error=f"body of {len(raw)} bytes is over {FEISHU_MAX_BODY_BYTES}: not sent"
            )
        answer = await self._poster.post(self._root + path, raw)
        return answer if isinstance(answer, PushResult) else _result(answer, (token, secret))


def _result(answer: Answer, hidden: tuple[str, str | None]) -> PushResult:
    code, message = _code(answer.body)
    message = _scrub(message, hidden)
    status = answer.status
    if code is None:
        return by_status(
            answer,
            default_retry=RATE_LIMITED_RETRY_SECONDS,
            channel="feishu",
            platform="Feishu",
            code="a code",
        )
    if code == CODE_OK:
        return PushResult(PushStatus.SENT)
    if code == CODE_RATE_LIMITED or (
        code == CODE_BAD_REQUEST_OR_RATE and (TOO_MANY_REQUEST in message.lower() or status == 429)
    ):
        wait = retry_after(answer.retry_after, RATE_LIMITED_RETRY_SECONDS)
        return PushResult(PushStatus.RETRY, error=f"{code} {message}", retry_after=wait)
    if code == CODE_BAD_REQUEST_OR_RATE:
        return PushResult(PushStatus.FAILED, error=f"{code} {message}: the body was refused")
    if code in FAILED_CODES:
        return PushResult(PushStatus.FAILED, error=f"{code} {FAILED_CODES[code]}")
    if code in BLOCKED_CODES:
        return PushResult(PushStatus.BLOCKED, error=f"{code} {BLOCKED_CODES[code]}")
    # A code the guide does not list: retried, and the worker's attempt limit ends it if it persists.
    return PushResult(PushStatus.RETRY, error=f"HTTP {status}, code {code} {message}".rstrip())


def _code(raw: bytes) -> tuple[int | None, str]:
    """The answer's code (or legacy StatusCode) and msg; (None, "") for anything else."""
    answer = json_object(raw)
    code = answer.get("code", answer.get("StatusCode"))
    if type(code) is not int:
        return None, ""
    return code, one_line(str(answer.get("msg", answer.get("StatusMessage", ""))))


def _scrub(message: str, hidden: tuple[str, str | None]) -> str:
    for secret in hidden:
        if secret:
            message = message.replace(secret, "…")
    # Anything else token-shaped and long (a token of another bot, say) goes too.
    return " ".join("…" if len(word) >= 24 and TOKEN.fullmatch(word) else word for word in message.split())
