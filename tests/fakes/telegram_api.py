"""A fake Telegram Bot API server: an aiohttp app on a free loopback port.

Routes /bot<token>/<method> as the Bot API does, takes parameters from the query string, a form (what
python-telegram-bot sends: JSON-encoded values in form fields) or a JSON body, and answers in the Bot
API's JSON shape: {"ok": true, "result": ...} or {"ok": false, "error_code", "description", "parameters"}
with the HTTP status equal to error_code. What it checks, as the real server does (sources: the Bot API
reference and ../shared/notes/channels.md, "Telegram Bot API"; the rules are in telegram_rules.py):

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
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.telegram_html import ParsedText
from tests.fakes.telegram_rules import (
    MAX_CALLBACK_ANSWER_CHARS,
    NOT_MODIFIED,
    ApiError,
    bad_request,
    check_commands,
    check_inline_answer,
    check_webhook,
    message_text,
    reply_markup,
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

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.url = ""
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.accepted: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, str]] = []
        self.blocked: set[int] = set()
        self.webhook: dict[str, Any] = {}
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
        self.received.clear()
        self.accepted.clear()
        self.errors.clear()
        self.blocked.clear()
        self._flood = None

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
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        self.received.append((method, params))
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = self._methods.get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            result = await handler(params)
        except ApiError as error:
            self.errors.append((method, error.description))
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.status)
        self.accepted.append((method, params))
        return web.json_response({"ok": True, "result": result})

    # --- methods ----------------------------------------------------------------------------------

    async def _get_me(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _set_my_commands(self, params: dict[str, Any]) -> Any:
        check_commands(params.get("commands"))
        return True

    async def _send_message(self, params: dict[str, Any]) -> Any:
        chat_id = self._writable_chat(params)
        text = message_text(params.get("text"), params.get("parse_mode"))
        markup = reply_markup(params.get("reply_markup"))
        message_id = next(self._message_ids)
        message = self._message(chat_id, message_id, text, markup)
        self._messages[(chat_id, message_id)] = _Stored(text, markup, message)
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
            retry_after = self._flood.retry_after
            raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
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
async def running_fake_telegram(token: str = TOKEN, port: int = 0) -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(token)
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
