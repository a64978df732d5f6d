"""The bot's conversation: commands, plain-text search, result pages, the topics keyboard and inline mode.

Every handler answers from memory or a database call or two (search is an in-process index, the latest
issue renders in milliseconds and is cached), so the webhook can run them before it answers Telegram.
A subscriber is (TELEGRAM.name, str(chat id)): a private chat is a reader, a group subscribes as a whole.
Errors go to `on_error`: a chat that blocked the bot is marked BLOCKED; anything unexpected is logged
and the reader gets a short apology instead of silence.
"""

from __future__ import annotations

import contextlib
import logging
from html import escape
from typing import Any

from telegram import InlineKeyboardMarkup, InlineQueryResultsButton, LinkPreviewOptions, Update
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    InlineQueryHandler,
    MessageHandler,
    filters,
)

from bot.services import Services
from bot.telegram import replies
from bot.telegram.deeplinks import read_payload
from bot.telegram.keyboard import (
    MAX_OFFSET,
    PAGE_SIZE,
    RecentQueries,
    page_keyboard,
    read_offset,
    read_page_data,
)
from bot.telegram.topics_keyboard import (
    TOPIC_DATA_PATTERN,
    find_topic,
    offered_topics,
    read_topic_data,
    topics_keyboard,
)
from bot.topics import POPULAR_TOPICS, change_lines, describe_topics
from channels.fitting import DoesNotFit
from channels.telegram import render_telegram
from channels.telegram.channel import TELEGRAM
from content.model import Issue
from storage.search.results import MAX_LIMIT, SearchResult
from storage.subscribers import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

CHANNEL = TELEGRAM.name
Context = ContextTypes.DEFAULT_TYPE
BotApplication = Application[ExtBot[None], Context, dict[Any, Any], dict[Any, Any], dict[Any, Any], None]
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
INLINE_CACHE_SECONDS = 300  # Telegram caches an inline answer per query; new issues appear within 5 min
# New messages only: an edited message or a channel post is not a new request.
_NEW_MESSAGE = filters.UpdateType.MESSAGE
# Plain text, unknown commands and the rest are answered in private chats only: in a group they are
# talk between members (or commands for other bots), and the bot speaks when addressed by a command.
_PRIVATE = _NEW_MESSAGE & filters.ChatType.PRIVATE


def masked(chat_id: int) -> str:
    """A chat id for the log: enough to tell chats apart while debugging, not enough to address one."""
    return f"…{str(chat_id)[-3:]}"


class TelegramHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.recent = RecentQueries()
        self._latest: tuple[tuple[str, str], str] | None = None  # ((date, content hash), message HTML)

    def register(self, application: BotApplication) -> None:
        for name, callback in (
            ("start", self.start),
            ("subscribe", self.subscribe),
            ("unsubscribe", self.unsubscribe),
            ("topics", self.topics),
            ("latest", self.latest),
            ("search", self.search),
            ("help", self.help),
        ):
            application.add_handler(CommandHandler(name, callback, filters=_NEW_MESSAGE))
        application.add_handler(MessageHandler(_PRIVATE & filters.TEXT & ~filters.COMMAND, self.text))
        application.add_handler(MessageHandler(_PRIVATE & filters.COMMAND, self.help))
        # Anything else (a sticker, a photo, an empty text): the search hint.
        application.add_handler(MessageHandler(_PRIVATE, self.other))
        # Topic buttons first: the page handler takes every other button.
        application.add_handler(CallbackQueryHandler(self.press_topic, pattern=TOPIC_DATA_PATTERN))
        application.add_handler(CallbackQueryHandler(self.page))
        application.add_handler(InlineQueryHandler(self.inline))
        application.add_error_handler(self.on_error)

    # --- commands ---------------------------------------------------------------------------------

    async def start(self, update: Update, context: Context) -> None:
        request = read_payload(context.args[0]) if context.args else None
        if request is None:
            await self._send(update, context, replies.welcome_html(context.bot.username))
        elif request.action == "subscribe":  # its payload is no topic: the whole newsletter
            await self._subscribe_all(update, context)
        elif request.action == "unsubscribe":
            await self._unsubscribe_all(update, context)
        elif request.action == "latest":
            await self.latest(update, context)
        elif request.action == "search":
            await self._search_reply(update, context, request.query)
        else:
            await self.help(update, context)

    async def help(self, update: Update, context: Context) -> None:
        await self._send(update, context, replies.help_html(context.bot.username))

    async def subscribe(self, update: Update, context: Context) -> None:
        """/subscribe: every issue, whole; /subscribe 量化 剪枝: those topics (subscribing if needed)."""
        words = " ".join(context.args or ())
        if words:
            await self._add_topics(update, context, words)
        else:
            await self._subscribe_all(update, context)

    async def unsubscribe(self, update: Update, context: Context) -> None:
        """/unsubscribe: nothing any more; /unsubscribe 量化: that topic off, the rest stays."""
        words = " ".join(context.args or ())
        if words:
            await self._remove_topics(update, context, words)
        else:
            await self._unsubscribe_all(update, context)

    async def _subscribe_all(self, update: Update, context: Context) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        subscribers = self.services.subscribers
        subscriber, changed = await subscribers.subscribe(CHANNEL, str(chat.id))
        if subscriber.topics:
            await subscribers.set_topics(CHANNEL, str(chat.id), ())
            await self._send(
                update, context, replies.topics_cleared_html(subscriber.topics, subscribed_now=changed)
            )
            return
        await self._send(update, context, replies.SUBSCRIBED if changed else replies.ALREADY_SUBSCRIBED)

    async def _unsubscribe_all(self, update: Update, context: Context) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        left = await self.services.subscribers.unsubscribe(CHANNEL, str(chat.id))
        await self._send(update, context, replies.UNSUBSCRIBED if left else replies.NOT_SUBSCRIBED)

    # --- topics -----------------------------------------------------------------------------------

    async def _active(self, chat_id: int) -> Subscriber | None:
        found = await self.services.subscribers.get(CHANNEL, str(chat_id))
        return found if found is not None and found.status is SubscriberStatus.ACTIVE else None

    async def _store_topics(self, chat_id: int, active: Subscriber | None, topics: tuple[str, ...]) -> None:
        """`topics` become the chat's; a chat not subscribed is subscribed with them."""
        subscribers = self.services.subscribers
        if active is None:
            subscriber, _ = await subscribers.subscribe(CHANNEL, str(chat_id), topics=topics)
            if subscriber.topics == topics:
                return
            # Subscribed meanwhile (another update), or coming back with no topics: ours are set.
        await subscribers.set_topics(CHANNEL, str(chat_id), topics)

    async def _add_topics(self, update: Update, context: Context, words: str) -> None:
        """Nothing is stored when every word is refused, so a typo subscribes nobody. A chat that left
        starts afresh: its old topics are not brought back with the new ones."""
        chat = update.effective_chat
        if chat is None:
            return
        active = await self._active(chat.id)
        change = self.services.topics.add(active.topics if active else (), words)
        if active is None and not change.added:
            text = replies.plain_html(change_lines(change), replies.NOT_SUBSCRIBED_TOPICS)
        else:
            if change.changed:
                await self._store_topics(chat.id, active, change.after)
            text = replies.plain_html(
                replies.SUBSCRIBED if active is None else "",
                change_lines(change),
                describe_topics(change.after),
            )
        await self._send(update, context, text)

    async def _remove_topics(self, update: Update, context: Context, words: str) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        active = await self._active(chat.id)
        if active is None:
            await self._send(update, context, replies.NOT_SUBSCRIBED)
            return
        change = self.services.topics.remove(active.topics, words)
        if change.changed:
            await self.services.subscribers.set_topics(CHANNEL, str(chat.id), change.after)
        text = replies.plain_html(change_lines(change), describe_topics(change.after))
        await self._send(update, context, text)

    async def topics(self, update: Update, context: Context) -> None:
        """/topics: the chat's topics and a keyboard to toggle them."""
        chat = update.effective_chat
        if chat is None:
            return
        active = await self._active(chat.id)
        chosen = active.topics if active else ()
        popular = self.services.topics.popular(POPULAR_TOPICS)
        keyboard = topics_keyboard(chosen, popular, subscribed=active is not None)
        await self._send(update, context, replies.topics_html(chosen if active else None), keyboard)

    async def press_topic(self, update: Update, context: Context) -> None:
        """A topic button: toggled (subscribing a chat that was not), the message edited to show it."""
        callback = update.callback_query
        if callback is None:
            return
        press = read_topic_data(callback.data or "")
        chat = update.effective_chat
        if press is None or chat is None or callback.message is None:
            await callback.answer(replies.TOPIC_BUTTON_EXPIRED)
            return
        vocabulary = self.services.topics
        popular = vocabulary.popular(POPULAR_TOPICS)
        active = await self._active(chat.id)
        current = active.topics if active else ()
        if press.clears:
            after: tuple[str, ...] = ()
            answer = replies.TOPICS_ALL
            if active is None or current:
                await self._store_topics(chat.id, active, after)
        else:
            topic = find_topic(press, offered_topics(current, popular))
            # Only a topic the chat has, or one as the vocabulary spells it: a forged button toggles
            # nothing that /subscribe would not have taken.
            if topic is None or (topic not in current and vocabulary.canonical(topic) != topic):
                await callback.answer(replies.TOPIC_BUTTON_EXPIRED)
                return
            change = vocabulary.toggle(current, topic)
            if change.over_cap:
                await callback.answer(replies.TOPICS_FULL)
                return
            after = change.after
            await self._store_topics(chat.id, active, after)
            answer = (replies.TOPIC_ON if topic in after else replies.TOPIC_OFF).format(topic=topic)
        await callback.answer(answer)
        try:
            await callback.edit_message_text(
                replies.topics_html(after),
                parse_mode=replies.PARSE_MODE,
                link_preview_options=NO_PREVIEW,
                reply_markup=topics_keyboard(after, popular),
            )
        except BadRequest as error:
            if "not modified" not in error.message:  # a double tap on 全部 shows what is shown
                raise

    async def latest(self, update: Update, context: Context) -> None:
        issue = await self.services.storage.issues.latest()
        await self._send(update, context, replies.NO_ISSUE if issue is None else self._latest_html(issue))

    async def search(self, update: Update, context: Context) -> None:
        await self._search_reply(update, context, " ".join(context.args or ()))

    async def text(self, update: Update, context: Context) -> None:
        message = update.effective_message
        await self._search_reply(update, context, (message.text or "") if message else "")

    async def other(self, update: Update, context: Context) -> None:
        await self._search_reply(update, context, "")

    # --- search -----------------------------------------------------------------------------------

    def _search(self, query: str, offset: int, limit: int = PAGE_SIZE) -> SearchResult:
        self.services.metrics.searches.labels(CHANNEL).inc()
        return self.services.search.search(query, limit=limit, offset=offset)

    def _page(self, query: str, offset: int) -> tuple[str, InlineKeyboardMarkup | None]:
        result = self._search(query, offset)
        keyboard = page_keyboard(query, offset, len(result.hits), result.total, self.recent)
        return replies.search_html(result, offset), keyboard

    async def _search_reply(self, update: Update, context: Context, query: str) -> None:
        text, keyboard = self._page(query, 0)
        await self._send(update, context, text, keyboard)

    async def page(self, update: Update, context: Context) -> None:
        """A 上一页/下一页 button: the message is edited to show that page."""
        callback = update.callback_query
        if callback is None:
            return
        request = read_page_data(callback.data or "", self.recent)
        if request is None:
            await callback.answer(replies.SEARCH_EXPIRED)
            return
        text, keyboard = self._page(request.query, request.offset)
        await callback.answer()
        try:
            await callback.edit_message_text(
                text, parse_mode=replies.PARSE_MODE, link_preview_options=NO_PREVIEW, reply_markup=keyboard
            )
        except BadRequest as error:
            if "not modified" not in error.message:  # a double tap asks for the page already shown
                raise

    async def inline(self, update: Update, context: Context) -> None:
        """@bot 量化 in any chat: up to 50 items to pick from, more as the reader scrolls."""
        inline = update.inline_query
        if inline is None:
            return
        query = inline.query.strip()
        if not query:
            button = InlineQueryResultsButton(text=replies.INLINE_HINT, start_parameter="help")
            await inline.answer([], button=button, cache_time=INLINE_CACHE_SECONDS)
            return
        # Our own next_offset comes back; anything else is forged and read as the first page.
        offset = read_offset(inline.offset) or 0
        result = self._search(query, offset, limit=MAX_LIMIT)
        following = offset + len(result.hits)
        more = bool(result.hits) and following < result.total and following <= MAX_OFFSET
        await inline.answer(
            replies.inline_articles(result),
            next_offset=str(following) if more else "",
            cache_time=INLINE_CACHE_SECONDS,
        )

    # --- helpers ----------------------------------------------------------------------------------

    async def _send(
        self, update: Update, context: Context, text: str, keyboard: InlineKeyboardMarkup | None = None
    ) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        await context.bot.send_message(
            chat.id,
            text,
            parse_mode=replies.PARSE_MODE,
            link_preview_options=NO_PREVIEW,
            reply_markup=keyboard,
        )

    def _latest_html(self, issue: Issue) -> str:
        """The latest issue as one message; rendered once per version of the issue."""
        version = (issue.date.isoformat(), issue.content_hash)
        if self._latest is None or self._latest[0] != version:
            try:
                text = (
                    render_telegram(self.services.renderer.document(issue, CHANNEL), max_messages=1)
                    .messages[0]
                    .text
                )
            except DoesNotFit:  # cannot happen for a real issue: one title per section fits easily
                text = f"<b>{escape(issue.title)}</b>（{issue.date.isoformat()}）"
            self._latest = (version, text)
        return self._latest[1]

    async def on_error(self, update: object, context: Context) -> None:
        """Errors of the handlers above (python-telegram-bot passes them here instead of raising)."""
        error = context.error
        chat = update.effective_chat if isinstance(update, Update) else None
        if isinstance(error, Forbidden):
            # The reader blocked the bot (or left the group): stop sending there.
            if chat is not None:
                await self.services.subscribers.set_status(CHANNEL, str(chat.id), SubscriberStatus.BLOCKED)
            log.info(
                "telegram: chat %s refuses messages; subscriber marked blocked",
                masked(chat.id) if chat else "?",
            )
        elif isinstance(error, RetryAfter):
            # A reader sending faster than Telegram lets us answer: the reply is dropped, not queued.
            # (error.message, not error.retry_after: reading that warns until PTB_TIMEDELTA is set.)
            log.warning("telegram: a reply was dropped: %s", error.message)
        elif isinstance(error, TelegramError):  # BadRequest is a bug of ours; TimedOut/NetworkError pass
            log.warning("telegram: the Bot API refused a reply: %s: %s", type(error).__name__, error.message)
        else:
            log.error("telegram: an update failed", exc_info=error)
            if chat is not None:
                with contextlib.suppress(TelegramError):
                    await context.bot.send_message(chat.id, replies.SORRY)
