"""What the bot says, as Telegram HTML: fixed texts, search result pages and inline results.

Only tags of the Bot API's HTML style are used (b, i, a href), and every piece of text that is not ours
(queries, titles, snippets, URLs) goes through `html.escape`, so a title or query holding `<script>` or
`&` is shown as written and can never break a message (docs/channels.md, "HTML style").
"""

from __future__ import annotations

import hashlib
from html import escape

from telegram import InlineQueryResultArticle, InputTextMessageContent
from telegram.constants import ParseMode

from bot.topics import describe_topics
from storage.search.results import SearchHit, SearchResult
from storage.subscribers import MAX_TOPICS

PARSE_MODE = ParseMode.HTML
QUERY_ECHO_CHARS = 24  # the reader's query, repeated in a result page's heading
TITLE_CHARS = 120
INLINE_TITLE_CHARS = 100
INLINE_DESCRIPTION_CHARS = 120

COMMANDS = (
    ("start", "开始使用"),
    ("subscribe", "订阅简报；加话题只收相关的，例如 /subscribe 量化"),
    ("unsubscribe", "退订；加话题只去掉它，例如 /unsubscribe 量化"),
    ("topics", "选择关注的话题"),
    ("latest", "看最新一期"),
    ("search", "搜索往期内容，例如 /search 量化"),
    ("help", "帮助"),
)

_HELP = (
    "<b>嵌入式AI简报</b>：端侧 AI 的芯片、模型压缩、推理框架与论文，每期精选。\n"
    "\n"
    "/subscribe 订阅，有新一期时推送到这里\n"
    "/unsubscribe 退订\n"
    "/topics 选择关注的话题，也可以 /subscribe 量化 剪枝 添加、/unsubscribe 量化 去掉\n"
    "/latest 看最新一期\n"
    "/search 关键词：搜索往期，也可以直接发关键词，例如：量化\n"
    "\n"
    "在任何聊天里输入 @{bot} 加关键词，可以把条目分享给朋友。"
)
_GREETING = "你好！这里是嵌入式AI简报的机器人。\n\n"


def help_html(bot_username: str) -> str:
    return _HELP.format(bot=escape(bot_username, quote=False))


def welcome_html(bot_username: str) -> str:
    return _GREETING + help_html(bot_username)


SUBSCRIBED = "已订阅 ✅ 有新一期时会推送到这里。\n退订请发 /unsubscribe"
ALREADY_SUBSCRIBED = "你已经订阅了，有新一期时会推送到这里。\n退订请发 /unsubscribe"
UNSUBSCRIBED = "已退订，不会再推送。想回来时发 /subscribe"
NOT_SUBSCRIBED = "你还没有订阅。订阅请发 /subscribe"
NO_ISSUE = "还没有发布任何一期，敬请期待。"
NO_MORE_RESULTS = "没有更多结果了。"
SEARCH_EXPIRED = "这个搜索已过期，请重新发送关键词。"
SORRY = "抱歉，刚才出了点问题，请稍后再试。"
INLINE_HINT = "输入关键词搜索往期，例如：量化"
TOPICS_CLEARED = "已清除你的话题：{topics}。以后每期都会完整推送到这里。"
NOT_SUBSCRIBED_TOPICS = "你还没有订阅，什么也没有改。"
TOPICS_HINT = "点下面的话题选择或取消；也可以发 /subscribe 话题 添加、/unsubscribe 话题 去掉。"
NOT_SUBSCRIBED_KEYBOARD = "你还没有订阅。点一个话题即订阅它，点『全部』接收每期完整简报。"
TOPIC_ON = "已订阅 {topic}"
TOPIC_OFF = "已取消 {topic}"
TOPICS_ALL = "已改为接收全部内容"
TOPICS_FULL = f"每人最多 {MAX_TOPICS} 个话题，先取消几个再选。"
TOPIC_BUTTON_EXPIRED = "这个按钮已失效，请重新发送 /topics"


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(title: str, url: str | None) -> str:
    shown = escape(shorten(title, TITLE_CHARS), quote=False)
    if url and url.startswith(("https://", "http://")):
        return f'<a href="{escape(url, quote=True)}">{shown}</a>'
    return f"<b>{shown}</b>"


def hit_html(hit: SearchHit, number: int | None = None) -> str:
    """One search hit: numbered title link, where it appeared, and its snippet."""
    lines = [(f"{number}. " if number is not None else "") + _link(hit.title, hit.url)]
    lines.append(f"<i>{hit.date.isoformat()} · {escape(shorten(hit.section, 40), quote=False)}</i>")
    if hit.snippet:
        lines.append(escape(hit.snippet, quote=False))
    return "\n".join(lines)


def search_html(result: SearchResult, offset: int) -> str:
    """A page of results (PAGE_SIZE of them from `offset`), or the search's hint when there are none."""
    query = escape(shorten(result.query, QUERY_ECHO_CHARS), quote=False)
    if not result.hits:
        if offset > 0:
            return f"🔎 <b>{query}</b>：{NO_MORE_RESULTS}"
        return escape(result.hint or NO_MORE_RESULTS, quote=False)
    first, last = offset + 1, offset + len(result.hits)
    heading = f"🔎 <b>{query}</b>：共 {result.total} 条，第 {first}–{last} 条"
    if result.hint:
        heading += f"\n<i>{escape(result.hint, quote=False)}</i>"
    blocks = [heading, *(hit_html(hit, number) for number, hit in enumerate(result.hits, first))]
    return "\n\n".join(blocks)


def result_id(hit: SearchHit) -> str:
    """An inline result id (1-64 bytes, unique per answer): the item's issue, section and position."""
    section = hashlib.blake2b(hit.section.encode(), digest_size=4).hexdigest()
    return f"{hit.date:%Y%m%d}-{section}-{hit.position}"


def inline_articles(result: SearchResult) -> list[InlineQueryResultArticle]:
    """Inline mode: each hit as an article that, when picked, sends the item's title link and snippet."""
    articles = []
    for hit in result.hits:
        description = f"{hit.date.isoformat()} · {hit.snippet}" if hit.snippet else hit.date.isoformat()
        url = hit.url if hit.url and hit.url.startswith(("https://", "http://")) else None
        articles.append(
            InlineQueryResultArticle(
                id=result_id(hit),
                title=shorten(hit.title, INLINE_TITLE_CHARS),
                description=shorten(description, INLINE_DESCRIPTION_CHARS),
                url=url,
                input_message_content=InputTextMessageContent(
                    hit_html(hit) + "\n— 嵌入式AI简报", parse_mode=PARSE_MODE
                ),
            )
        )
    return articles


# --- topics ---------------------------------------------------------------------------------------


def plain_html(*lines: str) -> str:
    """Lines of plain text (ours and the reader's words) as a message: escaped, blank ones dropped."""
    return escape("\n".join(line for line in lines if line), quote=False)


def topics_html(topics: tuple[str, ...] | None) -> str:
    """The /topics message: the reader's topics (None: not subscribed) and how to change them."""
    if topics is None:
        return plain_html(NOT_SUBSCRIBED_KEYBOARD)
    return plain_html(describe_topics(topics), TOPICS_HINT)


def topics_cleared_html(topics: tuple[str, ...], *, subscribed_now: bool) -> str:
    cleared = TOPICS_CLEARED.format(topics="、".join(topics))
    return plain_html(SUBSCRIBED if subscribed_now else "", cleared)
