"""A fake Telegram Bot API server: an aiohttp app on a free loopback port.

Routes /bot<token>/<method> as the Bot API does, takes parameters from the query string, a form (what
python-telegram-bot sends: JSON-encoded values in form fields) or a JSON body, and answers in the Bot
API's JSON shape: {"ok": true, "result": ...} or {"ok": false, "error_code", "description", "parameters"}
with the HTTP status equal to error_code. What it checks, as the real server does (sources: the Bot API
reference and docs/channels.md, "Telegram Bot API"; the rules are in telegram_rules.py):

- the token (401 Unauthorized), unknown methods (404 Not Found);
- message text: HTML parse mode with only Telegram's tags, properly nested (tests/fakes/telegram_html.py;
  400 "can't parse entities: ..."), 1-4096 UTF-16 code units after entity parsing, raw text <= 32768 bytes;
- inline keyboards: callback_data 1-64 bytes (400 BUTTON_DATA_INVALID);
- inline answers: <= 50 results, ids 1-64 bytes and unique, article texts valid like messages;
- blocked chats (`blocked`): 403 "Forbidden: bot was blocked by the user";
- flood control (`flood(retry_after)`): 429 "Too Many Requests: retry after N" with parameters.retry_after;
- editing: the message must exist; the same text and keyboard again is 400 "message is not modified".

Every call is recorded in `received` as (method, params), the rejected ones too; `errors` lists the
rejections as (method, description) and `accepted` the calls that succeeded, so a test can assert that
nothing was refused.

For the broadcast engine, all opt-in, so the bot tests see the fake as before:

- `limit_rate(per_second, per_chat_seconds)`: Telegram's flood limits on sendMessage, ~30 a second in all
  and 1 a second per chat (telegram_rules.FloodControl), answered with 429 and a retry_after that is
  the wait until the message would be accepted; `throttled` counts those answers;
- `faults(FaultPlan)`: injected failures of sendMessage (tests/fakes/faults.py): "500" (an error answer,
  nothing stored), "drop" (the connection closed without any answer, nothing stored: aiohttp clients
  raise ServerDisconnectedError), "429" (flood answer with the plan's retry_after, nothing stored) and
  "slow" (stored, then answered `slow_seconds` late: a client that gives up sooner cannot tell whether
  it was delivered); `injected` lists them as (fault, chat_id);
- `delivered()` counts the accepted sendMessage calls by (chat_id, text): a count above 1 is a message
  the user got twice; `accepted_times()` their arrival times, to measure the rate a sender achieved;
- `FakeTelegram(validate_html=False, record=False)` for throughput runs: texts are not parsed, and only
  counters, `delivered()` and `accepted_times()` are kept (not `received`, `accepted`, `errors`, nor the
  messages that editMessageText would edit), so the fake costs little per call and memory stays flat.

Besides /bot<token>/<method> it serves GET /_fake/stats (counters as JSON, see `stats()`) and POST
/_fake/block {"chat_ids": [...]}, for a sender running in another process (tests/fakes/serve.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.faults import FaultPlan
from tests.fakes.telegram_html import ParsedText
from tests.fakes.telegram_rules import (
    MAX_CALLBACK_ANSWER_CHARS,
    MESSAGES_PER_SECOND,
    NOT_MODIFIED,
    SECONDS_BETWEEN_MESSAGES_TO_A_CHAT,
    ApiError,
    FloodControl,
    bad_request,
    check_commands,
    check_inline_answer,
    check_webhook,
    message_text,
    reply_markup,
    too_many_requests,
    unchecked_message_text,
)

TOKEN = "123:ABC"
BOT_USERNAME = "jianbao_test_bot"

# Parameters python-telegram-bot sends JSON-encoded inside form fields.
_JSON_FIELDS = {
    "reply_markup",
    "results",
    "commands",
    "link_preview_options",
    "entities",
    "allowed_updates",
    "scope",
    "button",
    "reply_parameters",
}
_BOOL_FIELDS = {"is_personal", "show_alert", "drop_pending_updates", "disable_notification"}
FAULTS = ("500", "drop", "slow", "429")  # what a FaultPlan may inject into sendMessage


@dataclass
class _Flood:
    retry_after: int
    remaining: int


@dataclass
class _Stored:
    text: ParsedText
    reply_markup: Any
    message: dict[str, Any]  # the Message object the server answered with


Method = Callable[[dict[str, Any]], Awaitable[Any]]


class FakeTelegram:
    """The fake server's state. `url` is its root, to be given as the bot's API root (…/bot<token>/)."""

    def __init__(self, token: str = TOKEN, *, validate_html: bool = True, record: bool = True) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.url = ""
        self.validate_html = validate_html
        self.record = record  # False: keep counters and delivered() only (see the module's docstring)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, str]] = []
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] = {}
        self.rate_limit: FloodControl | None = None  # set by limit_rate(); None: no flood limits
        self.clock: Callable[[], float] = time.monotonic  # of the flood limits; a test may wind its own
        self.throttled = 0  # 429s answered by the flood limits (not by flood() or a FaultPlan)
        self.accepted_count = 0  # accepted sendMessage calls
        self.error_count = 0  # calls answered with an error, any method, any reason
        self.duplicates = 0  # accepted sendMessage calls that repeated an earlier (chat_id, text)
        self.injected: list[tuple[str, Any]] = []  # (fault, chat_id) of every fault a FaultPlan injected
        self._plan: FaultPlan | None = None
        self._delivered: Counter[tuple[int, str]] = Counter()
        self._accepted_times: list[float] = []
        self._closing: asyncio.Event | None = None
        self._flood: _Flood | None = None
        self._messages: dict[tuple[int, int], _Stored] = {}
        self._message_ids = itertools.count(1000)
        self._methods: dict[str, Method] = {
            "getMe": self._get_me,
            "setMyCommands": self._set_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "answerCallbackQuery": self._answer_callback_query,
            "answerInlineQuery": self._answer_inline_query,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        }
        self._runner: web.AppRunner | None = None

    # --- what tests use ---------------------------------------------------------------------------

    def flood(self, retry_after: int, times: int = 1) -> None:
        """Answer the next `times` sends (sendMessage, editMessageText) with 429 and this retry_after."""
        self._flood = _Flood(retry_after, times)

    def limit_rate(
        self,
        per_second: float = MESSAGES_PER_SECOND,
        per_chat_seconds: float = SECONDS_BETWEEN_MESSAGES_TO_A_CHAT,
    ) -> None:
        """From now on, apply Telegram's flood limits to sendMessage (telegram_rules.FloodControl);
        `fake.rate_limit = None` lifts them."""
        self.rate_limit = FloodControl(per_second, per_chat_seconds)

    def faults(self, plan: FaultPlan | None) -> None:
        """Inject the plan's faults into sendMessage from now on (None: no more faults)."""
        if plan is not None:
            plan.check(FAULTS)
        self._plan = plan

    def delivered(self) -> Counter[tuple[int, str]]:
        """Accepted sendMessage calls by (chat_id, text as sent): a count above 1 is a duplicate."""
        return Counter(self._delivered)

    def accepted_times(self) -> list[float]:
        """When each accepted sendMessage arrived (on `clock`, time.monotonic by default), in order."""
        return list(self._accepted_times)

    def stats(self) -> dict[str, Any]:
        """The counters, as GET /_fake/stats answers them. delivered: [chat_id, accepted sendMessage
        calls] per chat; first_accept/last_accept: on `clock` (time.monotonic is one clock for all
        processes of a Linux machine, so another process can compare them with its own)."""
        per_chat: Counter[int] = Counter()
        for (chat_id, _), count in self._delivered.items():
            per_chat[chat_id] += count
        times = self._accepted_times
        return {
            "accepted": self.accepted_count,
            "throttled": self.throttled,
            "errors": self.error_count,
            "duplicates": self.duplicates,
            "delivered": [[chat_id, count] for chat_id, count in sorted(per_chat.items())],
            "first_accept": times[0] if times else None,
            "last_accept": times[-1] if times else None,
            "injected": dict(Counter(fault for fault, _ in self.injected)),
            "blocked": len(self.blocked),
        }

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.received if name == method]

    def last_message(self, chat_id: int) -> dict[str, Any]:
        """The Message object of the latest message in a chat, as it stands now (edits applied)."""
        stored = [message for (chat, _), message in self._messages.items() if chat == chat_id]
        assert stored, f"no message was sent to chat {chat_id}"
        return max(stored, key=lambda message: message.message["message_id"]).message

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        """The sendMessage calls to one chat that the server accepted, as their parameters."""
        return [
            params
            for name, params in self.accepted
            if name == "sendMessage" and params.get("chat_id") == chat_id
        ]

    def clear(self) -> None:
        """Forget what was sent and unblock every chat; the flood limits start afresh. What a test
        configured stays: limit_rate's numbers, the FaultPlan, validate_html, record."""
        self.received.clear()
        self.accepted.clear()
        self.errors.clear()
        self.blocked.clear()
        self._flood = None
        if self.rate_limit is not None:
            self.rate_limit = FloodControl(self.rate_limit.per_second, self.rate_limit.per_chat_seconds)
        self.throttled = self.accepted_count = self.error_count = self.duplicates = 0
        self.injected.clear()
        self._delivered.clear()
        self._accepted_times.clear()

    @property
    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "嵌入式AI简报",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": True,
        }

    # --- serving ----------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_get("/_fake/stats", self._stats)
        app.router.add_post("/_fake/block", self._block)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
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

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await _params(request)
        except ConnectionError:
            # The sender died while sending (the crash tests kill workers): no one is left to answer, and
            # aiohttp would log the exception as a server error.
            return web.Response(status=400)
        if self.record:
            self.received.append((method, params))
        late_by = 0.0
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._methods.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            plan = self._plan
            fault = plan.draw(params.get("chat_id")) if plan is not None and method == "sendMessage" else None
            if plan is not None and fault is not None:
                self.injected.append((fault, params.get("chat_id")))
                if fault == "drop":
                    _drop_connection(request)
                    return web.Response()  # never written: the transport is closing
                if fault == "500":
                    raise ApiError(500, "Internal Server Error")
                if fault == "429":
                    raise too_many_requests(plan.retry_after)
                late_by = plan.slow_seconds
            result = await handler(params)
        except ApiError as error:
            self.error_count += 1
            if self.record:
                self.errors.append((method, error.description))
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            response = web.json_response(body, status=error.status)
        else:
            if self.record:
                self.accepted.append((method, params))
            response = web.json_response({"ok": True, "result": result})
        if late_by:
            await self._late(late_by)
        return response

    async def _late(self, seconds: float) -> None:
        """Wait before answering, but no longer than until the fake closes."""
        if self._closing is None:
            await asyncio.sleep(seconds)
            return
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _block(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        chat_ids = body.get("chat_ids") if isinstance(body, dict) else None
        if not isinstance(chat_ids, list) or not all(type(chat_id) is int for chat_id in chat_ids):
            return web.json_response(
                {"ok": False, "description": 'expected {"chat_ids": [int, ...]}'}, status=400
            )
        self.blocked.update(chat_ids)
        return web.json_response({"ok": True, "blocked": len(self.blocked)})

    # --- methods ----------------------------------------------------------------------------------

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _set_my_commands(self, params: dict[str, Any]) -> Any:
        check_commands(params.get("commands"))
        return True

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat_id = self._writable_chat(params)
        now = self.clock()
        if self.rate_limit is not None:
            retry_after = self.rate_limit.retry_after(chat_id, now)
            if retry_after is not None:
                self.throttled += 1
                raise too_many_requests(retry_after)
        raw = params.get("text")
        if self.validate_html:
            text = message_text(raw, params.get("parse_mode"))
        else:
            text = unchecked_message_text(raw)
        markup = reply_markup(params.get("reply_markup"))
        message_id = next(self._message_ids)
        message = self._message(chat_id, message_id, text, markup)
        if self.record:
            self._messages[(chat_id, message_id)] = _Stored(text, markup, message)
        # Accepted from here on: nothing below can refuse it.
        if self.rate_limit is not None:
            self.rate_limit.accept(chat_id, now)
        self.accepted_count += 1
        self._accepted_times.append(now)
        key = (chat_id, str(raw))
        count = self._delivered[key] + 1
        self._delivered[key] = count
        if count > 1:
            self.duplicates += 1
        return message

    async def _edit_message_text(self, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            message_text(params.get("text"), params.get("parse_mode"))
            reply_markup(params.get("reply_markup"))
            return True
        chat_id = self._writable_chat(params)
        message_id = params.get("message_id")
        stored = self._messages.get((chat_id, message_id)) if isinstance(message_id, int) else None
        if stored is None or not isinstance(message_id, int):
            raise bad_request("message to edit not found")
        text = message_text(params.get("text"), params.get("parse_mode"))
        markup = reply_markup(params.get("reply_markup"))
        if text == stored.text and markup == stored.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        message = self._message(chat_id, message_id, text, markup, edited=True)
        self._messages[(chat_id, message_id)] = _Stored(text, markup, message)
        return message

    async def _answer_callback_query(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        if len(str(params.get("text") or "")) > MAX_CALLBACK_ANSWER_CHARS:
            raise bad_request("MESSAGE_TOO_LONG")
        return True

    async def _answer_inline_query(self, params: dict[str, Any]) -> Any:
        check_inline_answer(params)
        return True

    async def _set_webhook(self, params: dict[str, Any]) -> Any:
        check_webhook(params)
        self.webhook = dict(params)
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> Any:
        self.webhook = {}
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> Any:
        return {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }

    # --- helpers ----------------------------------------------------------------------------------

    def _writable_chat(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise bad_request("chat_id is empty")
        if not isinstance(chat_id, int):
            raise bad_request("chat not found")
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if self._flood is not None and self._flood.remaining > 0:
            self._flood.remaining -= 1
            raise too_many_requests(self._flood.retry_after)
        return chat_id

    def _message(
        self, chat_id: int, message_id: int, text: ParsedText, markup: Any, *, edited: bool = False
    ) -> dict[str, Any]:
        now = int(time.time())
        chat: dict[str, Any] = (
            {"id": chat_id, "type": "private", "first_name": "读者"}
            if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "读书群"}
        )
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self.bot_user,
            "chat": chat,
            "date": now,
            "text": text.text,
        }
        if text.entities:
            message["entities"] = text.entities
        if markup:
            message["reply_markup"] = markup
        if edited:
            message["edit_date"] = now
        return message


def _drop_connection(request: web.Request) -> None:
    """Close the connection without answering, as a crashed or overloaded server does: the client has
    sent its request whole and reads end-of-file where the status line should be."""
    if request.transport is not None:
        request.transport.close()


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params.update(body)
        return params
    if request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if not isinstance(value, str):
                continue  # file uploads: no method of this fake takes one
            params[key] = _form_value(key, value)
    return params


def _form_value(key: str, value: str) -> Any:
    if key in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in _BOOL_FIELDS:
        return value == "true"
    if key in {"chat_id", "message_id"} and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    return value


@asynccontextmanager
async def running_fake_telegram(
    token: str = TOKEN, port: int = 0, *, validate_html: bool = True, record: bool = True
) -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(token, validate_html=validate_html, record=record)
    await fake.start(port)
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A fake Bot API server on a free loopback port, for the bot token TOKEN."""
    async with running_fake_telegram() as fake:
        yield fake
