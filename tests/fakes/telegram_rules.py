"""What the fake Bot API refuses, as the real one does: message texts, keyboards, inline answers,
command lists and webhooks, each with Telegram's error wording (Bot API reference; tdlib for texts;
docs/channels.md, "Telegram Bot API"), and the flood limits of sendMessage (`FloodControl`).
tests/fakes/telegram_api.py serves them."""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Any

from tests.fakes.telegram_html import EntityError, ParsedText, parse_html

# Limits (Bot API reference, https://core.telegram.org/bots/api; docs/channels.md, "Text limits" and
# "Deep links, callbacks, inline queries"; 32768 is unofficial).
MAX_TEXT_UNITS = 4096
MAX_RAW_TEXT_BYTES = 32768
MAX_CALLBACK_DATA_BYTES = 64
MAX_INLINE_RESULTS = 50
MAX_RESULT_ID_BYTES = 64
MAX_NEXT_OFFSET_BYTES = 64
MAX_CALLBACK_ANSWER_CHARS = 200
MAX_COMMANDS = 100
# Flood limits (Bots FAQ "My bot is hitting limits", https://core.telegram.org/bots/faq; docs/channels.md,
# "Flood limits"): about 30 messages a second in all
# and one a second to one chat. Telegram publishes them as guidance, not as exact rules.
MESSAGES_PER_SECOND = 30
SECONDS_BETWEEN_MESSAGES_TO_A_CHAT = 1.0
FLOOD_WINDOW_SECONDS = 1.0
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_START_PARAMETER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current message content and reply markup of the message"
)


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


class FloodControl:
    """Telegram's flood limits on sendMessage, over the arrival times of the messages it accepted.

    A message is refused when accepting it would put more than `per_second` accepted messages in the
    trailing FLOOD_WINDOW_SECONDS (a sliding window, not fixed one-second buckets: a sender that bursts at
    the edge of a bucket is caught), or when the last accepted message to the same chat is less than
    `per_chat_seconds` old. retry_after is the wait until it would be accepted, rounded up to whole
    seconds as Telegram's are, and at least 1. Only accepted messages count: a refused one does not
    push the window on. The real server also limits groups to ~20 messages a minute; this does not.
    """

    def __init__(
        self,
        per_second: float = MESSAGES_PER_SECOND,
        per_chat_seconds: float = SECONDS_BETWEEN_MESSAGES_TO_A_CHAT,
    ) -> None:
        if per_second < 1 or per_chat_seconds < 0:
            raise ValueError("per_second must be >= 1 and per_chat_seconds >= 0")
        self.per_second = per_second
        self.per_chat_seconds = per_chat_seconds
        self._allowed = math.floor(per_second)
        self._window: deque[float] = deque()  # arrival times of the accepted messages, oldest first
        self._last_by_chat: dict[int, float] = {}

    def retry_after(self, chat_id: int, now: float) -> int | None:
        """How long the sender must wait before this message is accepted, or None if it is now."""
        window = self._window
        horizon = now - FLOOD_WINDOW_SECONDS
        while window and window[0] <= horizon:
            window.popleft()
        refused, wait = False, 0.0
        excess = len(window) + 1 - self._allowed
        if excess > 0:
            # The message fits once the `excess` oldest ones have left the window.
            refused, wait = True, window[excess - 1] + FLOOD_WINDOW_SECONDS - now
        last = self._last_by_chat.get(chat_id)
        if last is not None and now - last < self.per_chat_seconds:
            refused, wait = True, max(wait, last + self.per_chat_seconds - now)
        return max(1, math.ceil(wait)) if refused else None

    def accept(self, chat_id: int, now: float) -> None:
        self._window.append(now)
        self._last_by_chat[chat_id] = now


def message_text(text: Any, parse_mode: Any) -> ParsedText:
    """A message text as Telegram reads it, or the ApiError it answers with."""
    if not isinstance(text, str) or not text:
        raise bad_request("message text is empty")
    if len(text.encode()) > MAX_RAW_TEXT_BYTES:
        raise bad_request("message is too long")
    if not parse_mode:
        parsed = ParsedText(text)
    elif str(parse_mode).lower() == "html":
        try:
            parsed = parse_html(text)
        except EntityError as error:
            raise bad_request(f"can't parse entities: {error}") from None
    else:
        raise bad_request(f"unsupported parse_mode {parse_mode!r} (this fake knows HTML only)")
    if not parsed.text.strip():
        raise bad_request("message text is empty")
    if parsed.length > MAX_TEXT_UNITS:
        raise bad_request("message is too long")
    return parsed


def unchecked_message_text(text: Any) -> ParsedText:
    """A message text taken as it is, without parsing its HTML: for benchmarks, where the fake must cost
    little. Only the checks that cost nothing stay (present, within the raw size limit)."""
    if not isinstance(text, str) or not text:
        raise bad_request("message text is empty")
    if len(text) > MAX_RAW_TEXT_BYTES // 4 and len(text.encode()) > MAX_RAW_TEXT_BYTES:
        raise bad_request("message is too long")
    return ParsedText(text)


def reply_markup(markup: Any) -> Any:
    """An inline keyboard as Telegram checks it (callback data 1-64 bytes); other markups pass."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for row in rows:
        for button in row:
            if not str(button.get("text") or "").strip():
                raise bad_request("BUTTON_TEXT_INVALID")
            if "callback_data" in button:
                data = str(button["callback_data"])
                if not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
                    raise bad_request("BUTTON_DATA_INVALID")
            elif "url" in button:
                if not re.match(r"(https?|tg)://", str(button["url"])):
                    raise bad_request("BUTTON_URL_INVALID")
            elif not any(
                key in button for key in ("switch_inline_query", "switch_inline_query_current_chat")
            ):
                raise bad_request("text buttons are unallowed in the inline keyboard")
    return markup


def check_commands(commands: Any) -> None:
    """setMyCommands: at most 100 commands of [a-z0-9_]{1,32}, descriptions of 1-256 characters."""
    if not isinstance(commands, list) or len(commands) > MAX_COMMANDS:
        raise bad_request("commands must be a list of at most 100 commands")
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND.fullmatch(str(command.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")


def check_inline_answer(params: dict[str, Any]) -> None:
    """answerInlineQuery: <= 50 results with unique 1-64 byte ids, article texts valid as messages."""
    if not params.get("inline_query_id"):
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    results = params.get("results")
    if not isinstance(results, list):
        raise bad_request("results must be an array")
    if len(results) > MAX_INLINE_RESULTS:
        raise bad_request("RESULTS_TOO_MUCH")
    seen: set[str] = set()
    for result in results:
        result_id = str(result.get("id", ""))
        if not 1 <= len(result_id.encode()) <= MAX_RESULT_ID_BYTES:
            raise bad_request("RESULT_ID_INVALID")
        if result_id in seen:
            raise bad_request("RESULT_ID_DUPLICATE")
        seen.add(result_id)
        if result.get("type") == "article":
            if not str(result.get("title") or "").strip():
                raise bad_request("RESULT_TITLE_EMPTY")
            content = result.get("input_message_content") or {}
            message_text(content.get("message_text"), content.get("parse_mode"))
        reply_markup(result.get("reply_markup"))
    if len(str(params.get("next_offset") or "").encode()) > MAX_NEXT_OFFSET_BYTES:
        raise bad_request("NEXT_OFFSET_INVALID")
    button = params.get("button")
    start_parameter = (button or {}).get("start_parameter")
    if start_parameter is not None and not _START_PARAMETER.fullmatch(str(start_parameter)):
        raise bad_request("START_PARAM_INVALID")


def check_webhook(params: dict[str, Any]) -> None:
    url = str(params.get("url") or "")
    if not url.startswith("https://"):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret = params.get("secret_token")
    if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
        raise bad_request("secret token contains unallowed characters")
