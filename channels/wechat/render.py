"""WeChat official account (公众号): an article for draft/add and a text message for replies.

`render_wechat(document)` returns both halves of the channel:

- `article`: the draft/add article. WeChat keeps only inline styles in a body and only links to other
  mp.weixin.qq.com articles, so every other link becomes its text plus `<sup>[n]</sup>`, numbered in order of
  first appearance (one number per URL), and the body ends with a 引用链接 list "[n] text: url": the
  "外链转引用" convention of doocs/md (renderer-impl.ts) and mdnice ("微信外链转脚注"). The body is rendered
  with templates/wechat_article.html.j2.
- `text`: a compact message for passive replies and customer-service pushes, where `<a href>` works.

Both are fitted to their budgets by channels.fitting.fit (section-aware: sections keep their header and
first item, cut sections end with "还有 N 条" pointing to the issue page).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from channels.base import TEMPLATE_DIR, utf8_bytes, utf16_units
from channels.document import IssueDocument, ItemBlock, Run, SectionBlock, shorten_text
from channels.fitting import fit, more_line, non_empty
from channels.links import RewrittenLink, is_wechat_article

# draft/add (developers.weixin.qq.com, 草稿箱 新建草稿): title "不超过32个字", author "不超过16个字",
# digest "不超过128个字", content "必须少于2万字符，小于1M" (markup included), content_source_url "不超过1KB".
WECHAT_TITLE_MAX = 32  # characters
WECHAT_AUTHOR_MAX = 16  # characters
WECHAT_DIGEST_MAX = 128  # characters
# Characters, markup and inline CSS included; counted in UTF-16 code units (>= code points), so the
# budget holds whichever way WeChat counts an emoji.
WECHAT_CONTENT_MAX_CHARS = 20_000  # content must be strictly shorter
WECHAT_CONTENT_MAX_BYTES = 1024 * 1024  # "小于1M": strictly smaller
WECHAT_SOURCE_URL_MAX_BYTES = 1024  # 阅读原文 link "不超过1KB"
# Passive reply / customer-service text: no official figure; 2048 bytes of UTF-8 is the community figure
# (docs/channels.md, "Passive reply"); longer customer-service text fails with 45002.
WECHAT_TEXT_MAX_BYTES = 2048
REFERENCE_LABEL_CHARS = 40  # the text shown in the 引用链接 list for a long title or link text

DEFAULT_AUTHOR = "嵌入式AI简报"
ARTICLE_TEMPLATE = "wechat_article.html.j2"
_BETWEEN_TAGS = re.compile(r">\s*\n\s*<")  # issue text is escaped, so a raw ">" or "<" is always markup
_SPACES = re.compile(r"\s+")
# Safe in a double-quoted href of a text message; the rest is percent-encoded (a '"' could end the
# attribute). "&" stays raw: the client is not known to decode entities in messages.
_HREF_SAFE = "!#$%&()*+,-./:;=?@[]^_{|}~"


@dataclass(frozen=True, slots=True)
class WeChatArticle:
    """The fields of one draft/add article (thumb_media_id is added by the sender after uploading)."""

    title: str
    author: str
    digest: str
    content: str
    content_source_url: str  # 阅读原文: the issue page, "" when there is no public URL

    def to_dict(self) -> dict[str, str]:
        return {
            "title": self.title,
            "author": self.author,
            "digest": self.digest,
            "content": self.content,
            "content_source_url": self.content_source_url,
        }


@dataclass(frozen=True, slots=True)
class WeChatPayload:
    article: WeChatArticle
    text: str  # passive reply / customer-service message
    links: tuple[RewrittenLink, ...]  # the rewritten links the article or the text shows

    def to_dict(self) -> dict[str, object]:
        return {
            "channel": "wechat",
            "article": self.article.to_dict(),
            "text": self.text,
            "links": [{"original": link.original, "rendered": link.rendered} for link in self.links],
        }

    def preview(self) -> str:
        article = self.article
        return "\n".join(
            [
                f"== 微信图文 ({utf16_units(article.content):,}/{WECHAT_CONTENT_MAX_CHARS:,} 字符) ==",
                f"标题：{article.title}",
                f"作者：{article.author}",
                f"摘要：{article.digest}",
                f"阅读原文：{article.content_source_url or '（无）'}",
                "",
                article_text(article.content),
                "",
                f"== 文本消息 ({utf8_bytes(self.text):,}/{WECHAT_TEXT_MAX_BYTES:,} 字节) ==",
                self.text,
            ]
        )


def render_wechat(document: IssueDocument, *, author: str = DEFAULT_AUTHOR) -> WeChatPayload:
    """The article and the text message of an issue, each fitted to its budget."""
    article, article_document = fit_article(document, author=author)
    text, text_document = fit_text(document)
    shown = _shown_urls(article_document, quick_news=True) | _shown_urls(text_document, quick_news=False)
    links = tuple(link for link in document.links if link.rendered in shown)
    return WeChatPayload(article=article, text=text, links=links)


def _shown_urls(document: IssueDocument, *, quick_news: bool) -> set[str]:
    items = [item for section in document.sections for item in section.items]
    if quick_news:
        items += document.quick_news
    urls = {item.url for item in items} | {run.url for item in items for run in item.summary}
    return {url for url in urls if url}


# -- the article ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of a line: plain text, an article link (`href`) or text with a reference number (`ref`)."""

    text: str
    href: str | None = None
    ref: int | None = None


@dataclass(frozen=True, slots=True)
class Reference:
    number: int
    label: str
    url: str


@dataclass(frozen=True, slots=True)
class ItemView:
    number: int
    title: tuple[Segment, ...]
    meta: str  # source and tags, shown in grey
    summary: tuple[tuple[Segment, ...], ...]  # one paragraph per line


@dataclass(frozen=True, slots=True)
class SectionView:
    name: str
    items: tuple[ItemView, ...]
    more: tuple[Segment, ...]  # "还有 N 条" and its reference, empty when nothing was cut


@dataclass(frozen=True, slots=True)
class ArticleView:
    headline: str | None
    tagline: str | None
    lead: tuple[str, ...]
    quick_news: tuple[tuple[Segment, ...], ...]
    sections: tuple[SectionView, ...]
    footer: tuple[Segment, ...]
    references: tuple[Reference, ...]
    focus: tuple[SectionView, ...] = ()  # a reader's "你关注的" block, shown before the lead


class _References:
    """Numbers the links that cannot stay links, in order of first appearance, one number per URL."""

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}
        self.entries: list[Reference] = []

    def segment(self, text: str, url: str | None) -> Segment:
        text = _SPACES.sub(" ", text)  # spaces between runs are kept: they separate words
        if url is None:
            return Segment(text)
        if is_wechat_article(url):
            return Segment(text, href=url)
        number = self._numbers.get(url)
        if number is None:
            number = self._numbers[url] = len(self.entries) + 1
            label = shorten_text(text.strip(), REFERENCE_LABEL_CHARS) or url
            self.entries.append(Reference(number, label, url))
        return Segment(text, ref=number)

    def lines(self, runs: tuple[Run, ...]) -> tuple[tuple[Segment, ...], ...]:
        """Runs -> lines of segments (split at every newline), blank lines left out."""
        lines: list[list[Segment]] = [[]]
        for run in runs:
            for position, part in enumerate(run.text.split("\n")):
                if position:
                    lines.append([])
                if part:
                    lines[-1].append(self.segment(part, run.url))
        return tuple(tuple(line) for line in lines if "".join(s.text for s in line).strip())


def article_view(document: IssueDocument) -> ArticleView:
    """What the template shows, with every link already numbered in the order the template shows it."""
    references = _References()
    shown = non_empty(document.sections)

    def view(section: SectionBlock) -> SectionView:
        items = tuple(_item_view(number, item, references) for number, item in enumerate(section.items, 1))
        more: tuple[Segment, ...] = ()
        if section.omitted:
            more = (references.segment(more_line(section.omitted), document.section_url(section)),)
        return SectionView(_one_line(section.name), items, more)

    # Numbered in the order the template shows them: the focus block comes first.
    focus = tuple(view(section) for section in shown if section.focus)
    quick_news = tuple((references.segment(news.title, news.url),) for news in document.quick_news)
    sections = [view(section) for section in shown if not section.focus]
    footer: tuple[Segment, ...] = ()
    if document.issue_url:
        footer = (references.segment("本期网页版", document.issue_url), Segment("，也可点击文末「阅读原文」"))
    return ArticleView(
        headline=_one_line(document.headline) if document.headline else None,
        tagline=_one_line(document.tagline) if document.tagline else None,
        lead=tuple(line for line in (document.lead or "").split("\n") if line.strip()),
        quick_news=quick_news,
        sections=tuple(sections),
        footer=footer,
        references=tuple(references.entries),
        focus=focus,
    )


def _item_view(number: int, item: ItemBlock, references: _References) -> ItemView:
    title = (references.segment(item.title, item.url),)
    meta = " · ".join(part for part in (item.source, *item.tags) if part and part.strip())
    return ItemView(number, title, _one_line(meta), references.lines(item.summary))


@functools.cache
def _template() -> Template:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(ARTICLE_TEMPLATE)


def article_content(document: IssueDocument) -> str:
    """The article body for a document as it is (no fitting)."""
    rendered = _template().render(view=article_view(document))
    return _BETWEEN_TAGS.sub("><", rendered).strip()


def article_fits(content: str, max_chars: int = WECHAT_CONTENT_MAX_CHARS) -> bool:
    return utf16_units(content) < max_chars and utf8_bytes(content) < WECHAT_CONTENT_MAX_BYTES


def fit_article(
    document: IssueDocument, *, author: str = DEFAULT_AUTHOR, max_chars: int = WECHAT_CONTENT_MAX_CHARS
) -> tuple[WeChatArticle, IssueDocument]:
    """The article of the least trimmed document whose body is under `max_chars`, and that document."""
    if not author.strip() or len(author) > WECHAT_AUTHOR_MAX:
        raise ValueError(f"the author must be 1 to {WECHAT_AUTHOR_MAX} characters: {author!r}")

    def attempt(candidate: IssueDocument) -> str | None:
        content = article_content(candidate)
        return content if article_fits(content, max_chars) else None

    content, trimmed = fit(document, attempt)
    source_url = document.issue_url or ""
    if utf8_bytes(source_url) > WECHAT_SOURCE_URL_MAX_BYTES:
        source_url = ""  # never cut a URL; WeChat would refuse the whole draft
    article = WeChatArticle(
        title=article_title(document),
        author=author,
        digest=article_digest(document),
        content=content,
        content_source_url=source_url,
    )
    return article, trimmed


def article_title(document: IssueDocument) -> str:
    title = _one_line(document.title)
    if document.headline:
        title = f"{title}：{_one_line(document.headline)}"
    return shorten_text(title, WECHAT_TITLE_MAX)


def article_digest(document: IssueDocument) -> str:
    """The share-card summary: the lead, else the tagline, else the first item of each section."""
    text = document.lead or document.tagline or ""
    if not text.strip():
        text = "；".join(section.items[0].title for section in document.sections if section.items)
    return shorten_text(_one_line(text), WECHAT_DIGEST_MAX)


# -- the text message ----------------------------------------------------------------------------------


def text_message(document: IssueDocument) -> str:
    """The text message for a document as it is (no fitting): plain lines and `<a href>` links."""
    lines = [_safe(_one_line(document.title))]
    for section in non_empty(document.sections):
        lines += ["", f"【{_safe(_one_line(section.name))}】"]
        for number, item in enumerate(section.items, 1):
            lines.append(f"{number}. {_text_link(_one_line(item.title), item.url)}")
            summary = "".join(_text_link(run.text, run.url) for run in item.summary)
            lines += [f"  {line}" for line in summary.split("\n") if line.strip()]
        if section.omitted:
            lines.append(_text_link(more_line(section.omitted), document.section_url(section)))
    if document.issue_url:
        lines += ["", f"完整一期：{_text_link('阅读全文', document.issue_url)}"]
    return "\n".join(lines)


def fit_text(document: IssueDocument, *, max_bytes: int = WECHAT_TEXT_MAX_BYTES) -> tuple[str, IssueDocument]:
    """The text of the least trimmed document within `max_bytes` of UTF-8, and that document."""

    def attempt(candidate: IssueDocument) -> str | None:
        text = text_message(candidate)
        return text if utf8_bytes(text) <= max_bytes else None

    return fit(document, attempt)


def _text_link(text: str, url: str | None) -> str:
    if url is None or urlsplit(url).scheme not in ("http", "https"):
        return _safe(text)
    return f'<a href="{quote(url, safe=_HREF_SAFE)}">{_safe(_SPACES.sub(" ", text))}</a>'


def _safe(text: str) -> str:
    """Issue text for a message, which cannot carry a tag: "<" and ">" become full-width brackets.

    Entities are not used: WeChat's client shows "&lt;" literally in messages (reported in
    Tencent/openclaw-weixin#245), and a full-width bracket reads the same and opens no tag.
    """
    return text.replace("<", "＜").replace(">", "＞")


def _one_line(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


# -- reading an article back (previews) --------------------------------------------------------------


class _TextExtractor(HTMLParser):
    BLOCKS = frozenset({"p", "h2", "h3", "section", "br"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "h2":
            self.parts.append("## ")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def article_text(content: str) -> str:
    """An article body as readable lines of text."""
    extractor = _TextExtractor()
    extractor.feed(content)
    extractor.close()
    lines = "".join(extractor.parts).split("\n")
    return "\n".join(line.strip() for line in lines if line.strip())
