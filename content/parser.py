"""Parse a 简报 Markdown issue into the content model.

markdown-it-py does the Markdown (blocks, lists, links, emphasis, tables, front matter, bare URLs);
this module only reads the newsletter's conventions off its syntax tree:

    # 嵌入式AI简报 (DATE)[：headline]        title line
    **tagline**  <font>note</font>           tagline and notes
    > 导读：lead                             lead
    - warm-up bullet                          quick news (bullets before the first section)
    ## 业界新闻 / 论文 / 开源项目 / 博文       sections
    - [TAG] [title | SOURCE](url) [[x]](u2)   an item: tags, primary link, secondary links
      标题：/代码：/论文：/链接：/网站：        fields
      摘要：summary, continuation lines, nested lists
    ## [往期回顾](...) | table of links       archive: the issue's references to other issues
    ----                                      footer (editor, licence) follows

The format drifted between 2019 and 2021 (see the corpus README); the rules here are written for the
family, not for particular files, and anything unrecognised is kept as text rather than dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode
from mdit_py_plugins.front_matter import front_matter_plugin

from content.errors import IssueFormatError
from content.model import Issue, Item, Link, QuickNews, Section
from content.source import IssueSource

ARCHIVE_HEADING = "往期回顾"
LEAD_LABEL = "导读"
SUMMARY_LABEL = "摘要"
# Labels of the metadata lines between an item's title line and its 摘要. A line with another short
# label counts as a field only when its value is a link, so prose like "AI方面：..." stays prose.
KNOWN_FIELD_LABELS = frozenset(
    {
        "标题",
        "代码",
        "论文",
        "链接",
        "网站",
        "项目",
        "地址",
        "主页",
        "作者",
        "来源",
        "原文",
        "视频",
        "文档",
        "博客",
        "下载",
        "演示",
        "会议",
        "机构",
        "单位",
        "数据集",
        "Code",
        "Paper",
        "Project",
        "Website",
        "Link",
        "Blog",
        "Video",
        "Slides",
        "PDF",
        "GitHub",
        "Github",
    }
)
# A Markdown list marker written with an en or em dash ("– item"), used once in the corpus; CommonMark
# does not know it, so it is rewritten to "- " before parsing (only at the start of a line).
# A title taken from an item's whole text when its first line has none.
MAX_FALLBACK_TITLE = 120
_DASH_BULLET = re.compile(r"^[–—](?= )", re.MULTILINE)
_TITLE_LINE = re.compile(
    r"^(?P<title>.*?[(（]\s*(?P<date>\d{4}\s*-\s*\d{1,2}\s*-\s*\d{1,2})\s*[)）])\s*[：:]?\s*(?P<headline>.*)$"
)
_FILE_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_TAG = re.compile(r"\[([^\[\]]+)\]")
_SOURCE_SPLIT = re.compile(r"\s*[|｜]\s*(?=[^|｜]*$)")
_FIELD_LINE = re.compile(r"^(?P<label>[^\s：:*_\[\]()#>`|]{1,8})\s*[：:]\s*(?P<value>.*)$")
_SUMMARY_LINE = re.compile(r"^[*_]{0,2}" + SUMMARY_LABEL + r"[*_]{0,2}\s*[：:]?\s*")
_URL_VALUE = re.compile(r"^(?:<?https?://\S+>?|\[[^\]]*\]\([^)]*\))$")
_LINKIFY_END = re.compile(r"[^\x21-\x7e]")  # bare URLs end at the first non-ASCII or space character
_HTML_TAG = re.compile(r"<[^>]+>")


def markdown_parser() -> MarkdownIt:
    """The Markdown dialect of the newsletter: CommonMark + tables + front matter + bare URLs."""
    md = MarkdownIt("commonmark", {"linkify": True, "maxNesting": 20})
    md.enable(["linkify", "table", "strikethrough"])
    md.use(front_matter_plugin)
    return md


def parse_issue(source: IssueSource, md: MarkdownIt | None = None) -> Issue:
    """Build an Issue from decoded text. Raises IssueFormatError naming what is missing."""
    text = _DASH_BULLET.sub("-", source.text)
    root = SyntaxTreeNode((md or markdown_parser()).parse(text))
    builder = _IssueBuilder(lines=text.split("\n"))
    for node in root.children:
        builder.feed(node)
    return builder.finish(source)


# --- the walk over top-level blocks --------------------------------------------------------------


@dataclass
class _SectionDraft:
    name: str
    items: list[Item] = field(default_factory=list)


@dataclass
class _IssueBuilder:
    lines: list[str]
    title_line: str | None = None
    title_line_number: int | None = None  # 1-based, for errors that point at it
    tagline: str | None = None
    lead: str | None = None
    quick_news: list[QuickNews] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[_SectionDraft] = field(default_factory=list)
    references: list[Link] = field(default_factory=list)
    # where we are: "head" before the first section, "section", "archive", "footer"
    state: str = "head"
    previous: str = ""  # the type of the block before this one

    def feed(self, node: SyntaxTreeNode) -> None:
        kind = node.type
        if kind == "front_matter":
            return
        if kind == "heading":
            self._heading(node)
        elif kind == "hr":
            # A top-level rule closes the content: what follows is the footer (editor, licence).
            if self.state in ("section", "archive"):
                self.state = "footer"
        elif self.title_line is None or self.state == "footer":
            return
        elif self.state == "archive":
            self.references.extend(link for link in _links(node) if _is_issue_reference(link.url))
        elif kind == "blockquote":
            self._blockquote(node)
        elif kind == "paragraph":
            self._paragraph(node)
        elif kind == "html_block":
            self._add_note(_strip_html(node.content))
        elif kind == "bullet_list":
            self._list(node)
        elif kind == "ordered_list" and self.previous == "bullet_list" and self.state == "section":
            self._attach_to_last_item(node)
        self.previous = kind

    def _heading(self, node: SyntaxTreeNode) -> None:
        text = _plain(node).strip()
        if node.tag == "h1":
            if self.title_line is None:
                self.title_line = text
                self.title_line_number = node.map[0] + 1 if node.map else None
            return
        if self.title_line is None or node.tag != "h2":
            return  # front-matter leftovers before the title; sub-headings inside a section
        if ARCHIVE_HEADING in text:
            self.state = "archive"
        elif text:
            self.sections.append(_SectionDraft(name=text))
            self.state = "section"

    def _blockquote(self, node: SyntaxTreeNode) -> None:
        paragraphs = [child for child in node.children if child.type == "paragraph"]
        if not paragraphs:
            return
        first = _inline_source(paragraphs[0])
        label = re.match(LEAD_LABEL + r"\s*[：:]?\s*", first)
        if label and self.state == "head" and self.lead is None:
            body = [first[label.end() :], *(_inline_source(p) for p in paragraphs[1:])]
            self.lead = "\n\n".join(_clean_lines(part) for part in body if part.strip()).strip()
            return
        for paragraph in paragraphs:
            self._add_note(_plain(paragraph))

    def _paragraph(self, node: SyntaxTreeNode) -> None:
        inline = node.children[0] if node.children else None
        if inline is None:
            return
        if self.state == "head" and self.tagline is None and self.lead is None:
            bold = _leading_strong(inline)
            if bold:
                self.tagline = bold
        for html_note in _inline_html_notes(inline):
            self._add_note(html_note)
        text = _plain(node).strip()
        if re.match(r"^注\s*[：:]", text):
            self._add_note(text)

    def _list(self, node: SyntaxTreeNode) -> None:
        if self.state == "head":
            self.quick_news.extend(_quick_news(item) for item in node.children)
        elif self.state == "section":
            section = self.sections[-1]
            for list_item in node.children:
                item = _item(list_item, len(section.items) + 1, self.lines)
                if item.title:  # an empty bullet ("- ") is not an item
                    section.items.append(item)

    def _attach_to_last_item(self, node: SyntaxTreeNode) -> None:
        """A numbered list at column 0 right after an item continues that item's summary.

        Editors write "摘要：... includes:\n1. a\n2. b" without indenting; CommonMark then closes the
        bullet list, but the reader sees the numbers as part of the item above (2020-03-02).
        """
        items = self.sections[-1].items if self.sections else []
        if not items or node.map is None:
            return
        extra = "\n".join(line.rstrip() for line in self.lines[node.map[0] : node.map[1]]).strip("\n")
        last = items[-1]
        summary = f"{last.summary}\n{extra}" if last.summary else extra
        links = tuple(dict.fromkeys((*last.links, *_links(node))))
        items[-1] = dataclasses.replace(last, summary=summary, links=links)

    def _add_note(self, text: str) -> None:
        text = _clean_lines(text).strip()
        if text and text not in self.notes:
            self.notes.append(text)

    def finish(self, source: IssueSource) -> Issue:
        if self.title_line is None:
            raise IssueFormatError("no title line (expected '# 嵌入式AI简报 (YYYY-MM-DD)')")
        title, date, headline = _split_title(self.title_line, source.path, self.title_line_number)
        if not self.sections:
            raise IssueFormatError(
                "no sections (expected '## 业界新闻', '## 论文', ... after the title line)",
                self.title_line_number,
            )
        return Issue(
            date=date,
            title=title,
            headline=headline,
            tagline=self.tagline,
            lead=self.lead,
            quick_news=tuple(self.quick_news),
            notes=tuple(self.notes),
            sections=tuple(
                Section(name=draft.name, position=index, items=tuple(draft.items))
                for index, draft in enumerate(self.sections, start=1)
            ),
            references=tuple(dict.fromkeys(self.references)),
            source_path=source.path,
            content_hash=source.content_hash,
        )


def _split_title(line: str, path: str | None, number: int | None = None) -> tuple[str, dt.date, str | None]:
    match = _TITLE_LINE.match(line)
    if match:
        title = match["title"].strip()
        headline = match["headline"].strip() or None
        date = _to_date(match["date"])
        if date is not None:
            return title, date, headline
    from_name = _FILE_DATE.search(path.rsplit("/", 1)[-1]) if path else None
    date = _to_date(from_name.group(0)) if from_name else None
    if date is None:
        if match:  # a date-shaped text that names no day (2026-02-30): say so rather than "no date"
            raise IssueFormatError(f"the title's date {match['date'].strip()!r} does not exist", number)
        raise IssueFormatError(f"no date in the title line {line[:60]!r} (expected '(YYYY-MM-DD)')", number)
    return line.strip(), date, None


def _to_date(raw: str) -> dt.date | None:
    try:
        year, month, day = (int(part) for part in re.sub(r"\s", "", raw).split("-"))
        return dt.date(year, month, day)
    except ValueError:
        return None


# --- items -----------------------------------------------------------------------------------------


def _item(node: SyntaxTreeNode, position: int, lines: list[str]) -> Item:
    head_tokens, head_lines = _head(node)
    tags, title, url = _title_parts(head_tokens)
    title, source = _split_source(title)
    if not title:
        # No text on the first line (e.g. "- - nested" or "- > quote"): name the item by its text.
        title = _squash(_plain(node))[:MAX_FALLBACK_TITLE]
    fields, summary = _body(_item_body_lines(node, head_lines, lines))
    return Item(
        position=position,
        title=title,
        url=url,
        source=source,
        tags=tags,
        fields=fields,
        summary=summary,
        links=tuple(dict.fromkeys(_links(node))),
    )


def _head(node: SyntaxTreeNode) -> tuple[list[Token], int]:
    """The tokens of an item's first line, and how many source lines that line spans."""
    first = node.children[0] if node.children else None
    if first is None or first.type != "paragraph" or not first.children:
        return [], 1
    tokens: list[Token] = []
    depth, spanned = 0, 1
    inline = first.children[0].token
    for token in (inline.children if inline is not None else None) or []:
        if token.type in ("softbreak", "hardbreak"):
            if depth == 0:
                break
            spanned += 1  # a link whose text wraps onto the next line stays in the title
        depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
        tokens.append(token)
    return tokens, spanned


def _title_parts(tokens: Sequence[Token]) -> tuple[tuple[str, ...], str, str | None]:
    """Tags before the first link, then that link's text and target (None when empty or absent)."""
    before: list[str] = []
    for index, token in enumerate(tokens):
        if token.type == "link_open":
            tags = tuple(tag.strip() for tag in _TAG.findall("".join(before)) if tag.strip())
            inner = _until_close(tokens, index + 1)
            return tags, _squash(_tokens_text(inner)), _link_target(token, inner)
        before.append(_token_text(token))
    plain = "".join(before)
    leading = _leading_tags(plain)
    tags = tuple(tag.strip() for tag in _TAG.findall(leading) if tag.strip())
    return tags, _squash(plain[len(leading) :]), None


def _leading_tags(text: str) -> str:
    match = re.match(r"^(?:\s*\[[^\[\]]+\])*", text)
    return match.group(0) if match else ""


def _until_close(tokens: Sequence[Token], start: int) -> list[Token]:
    """The tokens inside a link, up to its link_close (indexing, not slicing: slices made this O(n²))."""
    inner: list[Token] = []
    depth = 1
    for index in range(start, len(tokens)):
        token = tokens[index]
        depth += {"link_open": 1, "link_close": -1}.get(token.type, 0)
        if depth == 0:
            break
        inner.append(token)
    return inner


def _split_source(text: str) -> tuple[str, str | None]:
    """'title | SOURCE' -> (title, SOURCE), splitting at the last bar."""
    parts = _SOURCE_SPLIT.split(text, maxsplit=1)
    if len(parts) == 2:
        title, source = parts[0].strip(), parts[1].strip()
        if title and source:
            return title, source
    # A head whose link was never closed ("- [title | " in 2021-01-19) keeps its words, not the syntax.
    text = text.strip().rstrip("|｜").strip()
    if text.startswith("[") and "]" not in text:
        text = text[1:].lstrip()
    return text, None


def _item_body_lines(node: SyntaxTreeNode, head_lines: int, lines: list[str]) -> list[str]:
    """The Markdown source of an item after its first line, de-indented to the item's content."""
    if node.map is None:
        return []
    start, end = node.map
    marker = re.match(r"^(\s*(?:[-*+]|\d+[.)])\s+)", lines[start]) if start < len(lines) else None
    indent = len(marker.group(1)) if marker else 2
    body = []
    for raw in lines[start + head_lines : end]:
        stripped = len(raw) - len(raw.lstrip(" "))
        body.append(raw[min(stripped, indent) :].rstrip())
    while body and not body[-1]:
        body.pop()
    return body


def _body(lines: list[str]) -> tuple[dict[str, str], str]:
    """Split an item's body into its labelled fields and its 摘要 (Markdown)."""
    fields: dict[str, str] = {}
    summary: list[str] = []
    in_summary = False
    for line in lines:
        if not in_summary:
            summary_label = _SUMMARY_LINE.match(line)
            if summary_label:
                in_summary = True
                rest = line[summary_label.end() :]
                if rest:
                    summary.append(rest)
                continue
            field_match = _FIELD_LINE.match(line)
            if field_match and _is_field(field_match["label"], field_match["value"].strip()):
                label, value = field_match["label"], field_match["value"].strip().strip("<>")
                fields[label] = f"{fields[label]}\n{value}" if label in fields else value
                continue
        summary.append(line)
    return fields, "\n".join(summary).strip("\n")


def _is_field(label: str, value: str) -> bool:
    return bool(value) and (label in KNOWN_FIELD_LABELS or bool(_URL_VALUE.match(value)))


def _quick_news(node: SyntaxTreeNode) -> QuickNews:
    links = tuple(dict.fromkeys(_links(node)))
    return QuickNews(text=_squash(_plain(node)), url=links[0].url if links else None, links=links)


# --- links and text -----------------------------------------------------------------------------------


def _links(node: SyntaxTreeNode) -> Iterator[Link]:
    """Every link with a target under `node`, in document order."""
    for token in _walk_tokens(node):
        if token.type != "inline":
            continue
        children = token.children or []
        for index, child in enumerate(children):
            if child.type == "link_open":
                inner = _until_close(children, index + 1)
                url = _link_target(child, inner)
                if url:
                    yield Link(text=_squash(_tokens_text(inner)), url=url)


def _link_target(token: Token, inner: Sequence[Token]) -> str | None:
    href = str(token.attrs.get("href", "")).strip()
    if token.markup == "linkify":
        # linkify-it counts CJK text after a bare URL as part of it ("https://x.y/z。中文"); a URL
        # written bare in this newsletter ends at the first non-ASCII character of what was written.
        written = _tokens_text(inner)
        cut = _LINKIFY_END.search(written)
        if cut:
            href = written[: cut.start()].rstrip(".,;:!?)")
    return href or None


def _is_issue_reference(url: str) -> bool:
    return bool(_FILE_DATE.search(url))


def _walk_tokens(node: SyntaxTreeNode) -> Iterator[Token]:
    for child in node.walk():
        if child.token is not None:
            yield child.token
        elif child.nester_tokens is not None:
            yield child.nester_tokens.opening


def _tokens_text(tokens: Sequence[Token]) -> str:
    return "".join(_token_text(token) for token in tokens)


def _token_text(token: Token) -> str:
    if token.type in ("text", "code_inline"):
        return token.content
    if token.type in ("softbreak", "hardbreak"):
        return " "
    if token.type == "image":
        return _tokens_text(token.children or [])
    return ""


def _plain(node: SyntaxTreeNode) -> str:
    """The visible text under a node: emphasis markers and HTML tags dropped, link text kept."""
    parts: list[str] = []
    for token in _walk_tokens(node):
        if token.type == "inline":
            for child in token.children or []:
                if child.type == "html_inline":
                    continue
                parts.append(_token_text(child) if child.type not in ("softbreak", "hardbreak") else "\n")
            parts.append("\n")
    return "".join(parts).strip()


def _inline_source(paragraph: SyntaxTreeNode) -> str:
    inline = paragraph.children[0] if paragraph.children else None
    return inline.content if inline is not None else ""


def _leading_strong(inline: SyntaxTreeNode) -> str | None:
    """The text of a paragraph's first line when that line is wholly bold (the tagline)."""
    tokens = inline.token.children if inline.token is not None else None
    children = [token for token in tokens or [] if token.type != "text" or token.content.strip()]
    if not children or children[0].type != "strong_open":
        return None
    text: list[str] = []
    for token in children[1:]:
        if token.type == "strong_close":
            return _squash("".join(text)) or None
        text.append(_token_text(token))
    return None


def _inline_html_notes(inline: SyntaxTreeNode) -> Iterator[str]:
    """Text wrapped in inline HTML such as `<font>注：...</font>`."""
    children = inline.token.children if inline.token is not None else None
    inside: list[str] | None = None
    for token in children or []:
        if token.type == "html_inline":
            if token.content.startswith("</"):
                if inside is not None and "".join(inside).strip():
                    yield "".join(inside).strip()
                inside = None
            elif not token.content.endswith("/>"):
                inside = []
        elif inside is not None:
            inside.append(_token_text(token))


def _strip_html(html: str) -> str:
    return _HTML_TAG.sub("", html)


def _clean_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n"))


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
