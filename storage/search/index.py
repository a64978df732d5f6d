"""Keyword search over every item of every issue: an in-process tantivy index, BM25 with field weights,
a recency factor and glossary expansion.

Why an in-process index and not the databases' full-text search: results must be the same on SQLite
and PostgreSQL, and FTS5 and tsvector differ in tokenising, ranking and phrase handling, so two engines
would need two sets of tuning and still disagree. tantivy (Rust, from PyPI) takes our pre-segmented
tokens, gives BM25 with per-field boosts, phrase queries and a fast-field score weight, and answers in
well under a millisecond at this corpus' size (scripts/bench_search.py measures 1k/10k/100k items). The
index lives in memory, one per process: built from the database at start (a few hundred ms for the
demo corpus) and kept current by `refresh`, which compares each issue's content hash with what it
indexed and re-indexes only what changed, so imports and deletions by any process are followed.

Speed: tantivy-py evaluates every matching item (its collectors do not prune), so a query costs what
its postings cost. Glossary expansions bring in dozens of phrases (边缘 ai, tensorflow lite) whose
common words have long postings; the title and summary therefore also hold each glossary phrase they
contain as one token, in twin fields scored to give exactly what the phrase query gave (_twin_tokens).

Safety: a reader's text never reaches a query language. Queries are built from term and phrase objects
of already normalised tokens, so `title:x`, `NOT`, `"`, `*` or `C++` are words or nothing.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import tantivy
from cachetools import LRUCache

from content.model import Issue, Item
from storage.search.glossary import Glossary, Phrase
from storage.search.results import CACHED_QUERY_CHARS, MAX_LIMIT, MAX_OFFSET, SearchHit, SearchResult
from storage.search.text import TextAnalyzer, dictionary_version, plain_text

# Field weights: a word in the title says more about an item than the same word in its summary, and a
# word in the summary's first sentence (what the item is about) more than one further down.
TITLE_BOOST = 3.0
LEAD_BOOST = 1.5
META_BOOST = 1.5  # tags, source, fields such as 标题 (a paper's English title), section name
BODY_BOOST = 1.0
LEAD_CHARS = 120
# In a disjunction (one query word over several fields or synonyms) the best match counts fully and
# the others by this fraction, so an item does not win by repeating synonyms.
TIE_BREAKER = 0.3
# Recency: each year since EPOCH multiplies the score by (1 + RECENCY_PER_YEAR); between two otherwise
# equal items two years apart that is a ~6% lead, enough to break ties, not to bury relevance.
RECENCY_EPOCH = dt.date(2015, 1, 1)
RECENCY_PER_YEAR = 0.03
MAX_QUERY_CHARS = 64
ANSWER_CACHE_SIZE = 2048
PLAN_CACHE_SIZE = 4096
# The writer's memory while indexing (released at commit), taken only as needed. Enough for 100k items
# in one segment: every term clause of a query is looked up and walked per segment, and with 50-odd
# expansion terms three segments instead of one cost ~10% (64 MB gave three).
WRITER_HEAP_BYTES = 256_000_000
SNIPPET_CHARS = 80
# A query word's sub-words, matched as a phrase where the whole word is not written (神经网络 架构 搜索).
PARTS_WEIGHT = 0.8
_FIELDS = (("title", TITLE_BOOST), ("lead", LEAD_BOOST), ("meta", META_BOOST), ("body", BODY_BOOST))
# Glossary expansions are looked up in the title and the whole summary only: a synonym in the lead or
# the metadata adds little, and with 40-odd expansions per concept the two fields fewer halve the cost.
_EXPANSION_FIELDS = (("title", TITLE_BOOST), ("body", BODY_BOOST))
# Fields whose glossary phrases are also indexed as single tokens, in a twin field (see _twin_tokens).
_TWINNED = ("title", "body")
_JOIN = "\x1f"  # joins a phrase's words into one token; never in a token (normalize drops controls)
_PAD = "\x1f"  # fills a twin field up to its field's token count
_EVERY = "1"  # the one token of the "every" field, whose document frequency is BM25's document count
_SENTENCE_END = re.compile(r"[。！？!?\n]|\.\s")


@dataclass(frozen=True, slots=True)
class _Plan:
    """A query after analysis: its own words, what the glossary adds, and the words to highlight."""

    words: tuple[Phrase, ...]
    expansions: tuple[tuple[Phrase, float], ...]
    # In plan order, the reader's own words first, so snippets centre on what was asked.
    highlight: tuple[str, ...]


class SearchIndex:
    def __init__(self, analyzer: TextAnalyzer | None = None, glossary: Glossary | None = None) -> None:
        self.analyzer = analyzer or TextAnalyzer()
        self.glossary = glossary or Glossary.load(
            lambda entry: self.analyzer.words(self.analyzer.normalize(entry))
        )
        self.version = f"dictionary {dictionary_version()}, glossary {self.glossary.version}"
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("issue", stored=True, tokenizer_name="raw", index_option="basic")
        builder.add_text_field("section", stored=True, tokenizer_name="raw", index_option="basic")
        builder.add_integer_field("position", stored=True)
        builder.add_text_field("title_text", stored=True, tokenizer_name="raw", index_option="basic")
        builder.add_text_field("url", stored=True, tokenizer_name="raw", index_option="basic")
        builder.add_text_field("summary_text", stored=True, tokenizer_name="raw", index_option="basic")
        for name, _ in _FIELDS:
            # Filled with pre-tokenized text (our segmenter's tokens and positions); "raw" is never used.
            builder.add_text_field(name, stored=False, tokenizer_name="raw", index_option="position")
        for name in _TWINNED:
            builder.add_text_field(f"{name}_phrases", stored=False, tokenizer_name="raw", index_option="freq")
        builder.add_text_field("every", stored=False, tokenizer_name="raw", index_option="basic")
        builder.add_float_field("recency", stored=False, fast=True)
        self._schema = builder.build()
        self._index = tantivy.Index(self._schema)  # in memory
        self._hashes: dict[dt.date, str] = {}
        self._searcher = self._index.searcher()
        # Readers ask the same few words again and again (量化, 剪枝...): answers are kept until the
        # index changes. Bounded, least recently used out first.
        self._answers: LRUCache[tuple[str, int, int], SearchResult] = LRUCache(maxsize=ANSWER_CACHE_SIZE)
        self.generation = 0  # bumped whenever the indexed items change: callers' caches key on it
        # A query's analysis does not depend on the index: kept across changes, bounded, LRU.
        self._plans: LRUCache[str, _Plan] = LRUCache(maxsize=PLAN_CACHE_SIZE)
        # Query objects, of glossary expansions (few, recurring in every query of their concept) and of
        # whole queries (bounded, LRU): they hold the index's term statistics (see _phrase_query), so
        # they are rebuilt when the index changes. Composing tantivy queries copies their parts, which
        # for a concept's 50-odd expansions costs as much as the rest of the Python side of a search.
        self._expansions: dict[tuple[Phrase, float], tantivy.Query | None] = {}
        self._queries: LRUCache[_Plan, tantivy.Query] = LRUCache(maxsize=PLAN_CACHE_SIZE)
        # Every multi-word glossary phrase, by its first word: what _twin_tokens looks for.
        self._glossary_phrases = {
            phrase
            for concept in self.glossary.concepts
            for phrase in (*concept.terms, *concept.narrower)
            if len(phrase) > 1
        }
        self._phrases: dict[str, list[Phrase]] = {}
        self._pad = tantivy.Token(_PAD, 0, 0, 0)
        for phrase in sorted(self._glossary_phrases):
            self._phrases.setdefault(phrase[0], []).append(phrase)

    # --- building ---------------------------------------------------------------------------------

    @property
    def indexed(self) -> dict[dt.date, str]:
        """The content hash of every indexed issue."""
        return dict(self._hashes)

    def replace_issues(self, issues: Iterable[Issue], removed: Iterable[dt.date] = ()) -> int:
        """Index these issues (replacing earlier versions) and drop the removed ones. Returns items added."""
        writer = self._index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        added = 0
        for date in removed:
            writer.delete_documents_by_term("issue", date.isoformat())
            self._hashes.pop(date, None)
        for issue in issues:
            writer.delete_documents_by_term("issue", issue.date.isoformat())
            for section in issue.sections:
                for item in section.items:
                    writer.add_document(self._document(issue.date, section.name, item))
                    added += 1
            self._hashes[issue.date] = issue.content_hash
        writer.commit()
        writer.wait_merging_threads()
        self._index.reload()
        self._searcher = self._index.searcher()
        self._answers.clear()
        self._expansions.clear()
        self._queries.clear()
        self.generation += 1
        return added

    def _document(self, date: dt.date, section: str, item: Item) -> tantivy.Document:
        meta = " ".join([*item.tags, item.source or "", section, *item.fields.values()])
        years = (date - RECENCY_EPOCH).days / 365.25
        document = tantivy.Document(
            issue=date.isoformat(),
            section=section,
            position=item.position,
            title_text=item.title,
            url=item.url or "",
            # Stored as the one-line plain text snippets are cut from, so a hit costs no Markdown work.
            summary_text=" ".join(plain_text(item.summary).split()),
            # tantivy multiplies the score by log2(2 + weight); this weight makes that 1 + k * years.
            recency=2.0 ** (1.0 + RECENCY_PER_YEAR * max(years, 0.0)) - 2.0,
            every=_EVERY,
        )
        body = plain_text(item.summary)
        fields = (("title", item.title), ("lead", lead(body)), ("meta", plain_text(meta)), ("body", body))
        for name, text in fields:
            positioned = self.analyzer.positioned(text)
            tokens = [tantivy.Token(*token) for token in positioned]
            document.add_pre_tokenized_text(name, tantivy.PreTokenizedString(text, tokens))
            if name in _TWINNED:
                twin = self._twin_tokens(positioned)
                document.add_pre_tokenized_text(f"{name}_phrases", tantivy.PreTokenizedString("", twin))
        return document

    def _twin_tokens(self, positioned: list[tuple[str, int, int, int]]) -> list[tantivy.Token]:
        """A field's glossary phrases as one token each, padded to the field's token count.

        A phrase query checks positions in the intersection of its words' postings, and common words
        (端, ai, 移动) made phrases most of the cost of an expanded query; the twin token is a plain
        term. Padding gives the twin the same length as its field, so BM25's length normalisation is
        the same for both, and _phrase_query boosts the twin from its own idf to the phrase's (the sum of
        its words' idf): the twin scores what the phrase query scored.
        """
        twin = []
        if not self._phrases.keys().isdisjoint(token for token, _, _, _ in positioned):
            at: dict[int, set[str]] = {}
            for token, position, _, _ in positioned:
                at.setdefault(position, set()).add(token)
            twin = [
                tantivy.Token(_JOIN.join(phrase), position, 0, 0)
                for position, words in at.items()
                for word in words
                for phrase in self._phrases.get(word, ())
                if all(phrase[i] in at.get(position + i, ()) for i in range(1, len(phrase)))
            ]
        twin += [self._pad] * (len(positioned) - len(twin))
        return twin

    @property
    def size(self) -> int:
        return int(self._searcher.num_docs)

    # --- searching --------------------------------------------------------------------------------

    def search(self, text: str, limit: int = 10, offset: int = 0, *, cached: bool = True) -> SearchResult:
        """The best items for `text`; `cached=False` skips the answer cache (the benchmark measures work).

        `limit` is brought within 1..MAX_LIMIT; an offset past MAX_OFFSET finds no items (the total is
        still counted), as an offset past the last result does: whatever a caller passes, tantivy never
        collects more than MAX_OFFSET + MAX_LIMIT items.
        """
        limit = max(1, min(limit, MAX_LIMIT))
        offset = max(0, min(offset, MAX_OFFSET + 1))  # every offset past the bound answers the same
        key = (text, limit, offset)
        if not cached or len(text) > CACHED_QUERY_CHARS:
            return self._search(text, limit, offset)
        try:
            return self._answers[key]  # a hit: one lookup (get() would look twice)
        except KeyError:
            pass
        result = self._answers[key] = self._search(text, limit, offset)
        return result

    def every_hit(self, text: str, *, most: int | None = None, cached: bool = True) -> Iterator[SearchHit]:
        """Every item `text` finds, best first, a page of MAX_LIMIT at a time, up to `most` items (and never
        past MAX_OFFSET, where every search stops)."""
        offset = 0
        while offset <= MAX_OFFSET and (most is None or offset < most):
            hits = self.search(text, limit=MAX_LIMIT, offset=offset, cached=cached).hits
            yield from hits
            if len(hits) < MAX_LIMIT:
                return
            offset += MAX_LIMIT

    def _search(self, text: str, limit: int, offset: int) -> SearchResult:
        hint = None
        cleaned = " ".join(self.analyzer.normalize(text).split())
        if len(cleaned) > MAX_QUERY_CHARS:
            cleaned = cleaned[:MAX_QUERY_CHARS]
            hint = f"查询太长，只用了前 {MAX_QUERY_CHARS} 个字符"
        plan = self._plan(cleaned)
        if not plan.words:
            return SearchResult(
                query=text, hits=(), total=0, hint="请输入要查找的关键词，例如：量化、剪枝、NPU"
            )
        beyond = offset > MAX_OFFSET
        found = self._searcher.search(
            self._query(plan),
            limit=1 if beyond else limit,
            offset=0 if beyond else offset,
            count=True,
            weight_by_field="recency",
        )
        hits = () if beyond else tuple(self._hit(score, at, plan.highlight) for score, at in found.hits)
        if not hits and offset == 0:
            hint = hint or "没有找到相关条目，换个说法试试，例如：量化、剪枝、编译器"
        total = found.count  # type: ignore[attr-defined]  # present at run time, missing from tantivy's stub
        return SearchResult(query=text, hits=hits, total=int(total or 0), hint=hint)

    def _plan(self, cleaned: str) -> _Plan:
        plan = self._plans.get(cleaned)
        if plan is not None:
            return plan
        tokens = list(dict.fromkeys(self.analyzer.words(cleaned)))
        words: list[Phrase] = [(token,) for token in tokens]
        own = set(words)
        weights: dict[Phrase, float] = {}
        for phrase in self.glossary.matches(tokens):
            if len(phrase) > 1 and phrase not in own:
                words.append(phrase)  # the reader typed a known multi-word term: match it as a phrase
                own.add(phrase)
            for expansion in self.glossary.expand(phrase):
                if expansion.phrase not in own:
                    weights[expansion.phrase] = max(weights.get(expansion.phrase, 0.0), expansion.weight)
        expansions = tuple(sorted(weights.items(), key=lambda pair: -pair[1]))
        phrases = [*words, *(phrase for phrase, _ in expansions)]
        highlight = tuple(dict.fromkeys(token for phrase in phrases for token in phrase))
        plan = self._plans[cleaned] = _Plan(tuple(words), expansions, highlight)
        return plan

    def _query(self, plan: _Plan) -> tantivy.Query:
        query = self._queries.get(plan)
        if query is not None:
            return query
        clauses = [query for query in map(self._word_query, plan.words) if query is not None]
        expansions = [self._expansion_query(phrase, weight) for phrase, weight in plan.expansions]
        expansion = _best_of([query for query in expansions if query is not None], TIE_BREAKER)
        if expansion is not None:
            clauses.append(expansion)
        if len(clauses) == 1:
            query = clauses[0]
        else:
            query = tantivy.Query.boolean_query([(tantivy.Occur.Should, clause) for clause in clauses])
        self._queries[plan] = query
        return query

    def _word_query(self, phrase: Phrase) -> tantivy.Query | None:
        """The reader's own word: the whole word, or failing that its parts in order."""
        whole = self._phrase_query(phrase, 1.0)
        parts = self.analyzer.parts(phrase[0]) if len(phrase) == 1 else []
        in_parts = self._phrase_query(tuple(parts), PARTS_WEIGHT) if parts else None
        return _best_of([query for query in (whole, in_parts) if query is not None], 0.0)

    def _expansion_query(self, phrase: Phrase, weight: float) -> tantivy.Query | None:
        key = (phrase, weight)
        if key not in self._expansions:
            self._expansions[key] = self._phrase_query(phrase, weight, _EXPANSION_FIELDS)
        return self._expansions[key]

    def _phrase_query(
        self, phrase: Phrase, weight: float, fields: tuple[tuple[str, float], ...] = ()
    ) -> tantivy.Query | None:
        """`phrase` in each field, the best field counting most; None if no item can match."""
        per_field = []
        for name, boost in fields or _FIELDS:
            if len(phrase) == 1:
                if not self._searcher.doc_freq(name, phrase[0]):
                    continue  # a clause that matches nothing adds nothing to any score
                query = tantivy.Query.term_query(self._schema, name, phrase[0])
            elif name in _TWINNED and phrase in self._glossary_phrases:
                twin = _JOIN.join(phrase)
                twin_frequency = self._searcher.doc_freq(f"{name}_phrases", twin)
                if not twin_frequency:
                    continue
                # BM25 gives a phrase the sum of its words' idf; the twin token has its own, rarer, idf.
                documents = self._searcher.doc_freq("every", _EVERY)
                words_idf = sum(_idf(self._searcher.doc_freq(name, word), documents) for word in phrase)
                boost *= words_idf / _idf(twin_frequency, documents)
                query = tantivy.Query.term_query(self._schema, f"{name}_phrases", twin)
            else:
                query = tantivy.Query.phrase_query(self._schema, name, list(phrase))
            per_field.append(tantivy.Query.boost_query(query, boost * weight))
        return _best_of(per_field, TIE_BREAKER)

    def _hit(self, score: float, address: tantivy.DocAddress, words: tuple[str, ...]) -> SearchHit:
        document = self._searcher.doc(address)
        title = str(document.get_first("title_text") or "")
        summary = str(document.get_first("summary_text") or "")
        url = str(document.get_first("url") or "") or None
        # Only for highlighting, so lower case suffices: the analyzer's NFKC and Traditional -> Simplified
        # steps cost more than the rest of the hit and rarely change what is highlighted.
        haystack = f"{title}\n{summary}".lower()
        matched = tuple([word for word in words if word in haystack])  # a list: quicker than a generator
        return SearchHit(
            date=dt.date.fromisoformat(str(document.get_first("issue"))),
            section=str(document.get_first("section")),
            position=int(document.get_first("position") or 0),
            title=title,
            url=url,
            snippet=snippet(summary, matched),
            score=float(score),
            matched=matched,
        )


def snippet(text: str, words: Sequence[str]) -> str:
    """About SNIPPET_CHARS characters of one-line `text` around the first of `words` (in their order)."""
    flat = text.strip()
    if len(flat) <= SNIPPET_CHARS:
        return flat
    lowered = flat.lower()
    found = next((at for at in (lowered.find(word) for word in words if word) if at >= 0), 0)
    start = max(0, found - SNIPPET_CHARS // 4)
    end = min(len(flat), start + SNIPPET_CHARS)
    start = max(0, end - SNIPPET_CHARS)
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")


def lead(text: str) -> str:
    """The first sentence of a summary (at most LEAD_CHARS characters): what the item is about."""
    text = text.strip()
    end = _SENTENCE_END.search(text)
    return text[: min(end.start() if end else len(text), LEAD_CHARS)]


def _best_of(queries: list[tantivy.Query], tie_breaker: float) -> tantivy.Query | None:
    """A disjunction-max of the queries; of one query, the query itself (the same score, one union
    less to walk); of none, None."""
    if len(queries) > 1:
        return tantivy.Query.disjunction_max_query(queries, tie_breaker)
    return queries[0] if queries else None


def _idf(frequency: int, documents: int) -> float:
    """BM25's inverse document frequency, as tantivy computes it (the document count includes deleted
    items not yet merged away, as the "every" field's frequency does)."""
    return math.log(1.0 + (documents - frequency + 0.5) / (frequency + 0.5))


def freshness(date: dt.date) -> float:
    """The recency factor an item of `date` gets (exposed for tests and the benchmark)."""
    return 1.0 + RECENCY_PER_YEAR * max((date - RECENCY_EPOCH).days / 365.25, 0.0)
