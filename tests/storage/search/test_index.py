"""The index over the real issues: ranking, cross-lingual matches, and every hostile query answered."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import tantivy

from content.model import Issue, Item, Section
from storage.search.index import MAX_QUERY_CHARS, SearchIndex, freshness
from storage.search.results import MAX_LIMIT, MAX_OFFSET
from storage.search.text import TextAnalyzer


def ids(index: SearchIndex, query: str, limit: int = 10) -> list[str]:
    return [f"{hit.date}/{hit.section}/{hit.position}" for hit in index.search(query, limit=limit).hits]


def small_index(analyzer: TextAnalyzer, *items: Item, date: dt.date = dt.date(2021, 1, 1)) -> SearchIndex:
    index = SearchIndex(analyzer)
    index.replace_issues(
        [Issue(date=date, title="t", sections=(Section("论文", 1, items=items),), content_hash="a" * 64)]
    )
    return index


def test_quantization_query_finds_quantization_items_first(demo_index: SearchIndex) -> None:
    result = demo_index.search("量化")
    assert result.total > 20
    for hit in result.hits:
        words = {"量化", "quantization", "quantized", "int8", "低比特", "bnn", "1-bit", "binary", "二值化"}
        assert words & set(hit.matched), hit.title
    assert "EasyQuant" in " ".join(hit.title for hit in result.hits)


def test_chinese_query_finds_items_written_only_in_english(demo_index: SearchIndex) -> None:
    english_only = "2020-07-02/论文/2"  # "Efficient Execution of Quantized Deep Learning Models" (TVM)
    assert english_only in ids(demo_index, "量化", limit=50)
    assert "2019-03-31/论文/3" in ids(
        demo_index, "剪枝", limit=30
    )  # "To Compress or Not to Compress" (pruning)


def test_full_width_traditional_and_case_variants_agree(demo_index: SearchIndex) -> None:
    assert ids(demo_index, "ＩＮＴ８") == ids(demo_index, "int8") == ids(demo_index, "INT8")
    assert ids(demo_index, "編譯器") == ids(demo_index, "编译器")


@pytest.mark.parametrize("query", ["量化", "剪枝", "端侧", "蒸馏"])
def test_two_character_queries_work(demo_index: SearchIndex, query: str) -> None:
    assert len(demo_index.search(query).hits) == 10


def test_mixed_runs_match(demo_index: SearchIndex) -> None:
    assert demo_index.search("INT8量化").hits
    assert demo_index.search("NPU端侧").hits
    assert demo_index.search("ncnn新增int4").hits


def test_title_outweighs_summary(analyzer: TextAnalyzer) -> None:
    in_title = Item(1, title="剪枝方法综述", summary="一篇综述。")
    in_summary = Item(2, title="方法综述", summary="一篇关于剪枝的综述。")
    assert ids(small_index(analyzer, in_summary, in_title), "剪枝") == [
        "2021-01-01/论文/1",
        "2021-01-01/论文/2",
    ]


def test_newer_items_win_ties(analyzer: TextAnalyzer) -> None:
    index = SearchIndex(analyzer)
    item = Item(1, title="剪枝", summary="剪枝")
    index.replace_issues(
        [
            Issue(
                date=dt.date(2019, 1, 1),
                title="old",
                sections=(Section("论文", 1, items=(item,)),),
                content_hash="a" * 64,
            ),
            Issue(
                date=dt.date(2021, 1, 1),
                title="new",
                sections=(Section("论文", 1, items=(item,)),),
                content_hash="b" * 64,
            ),
        ]
    )
    hits = index.search("剪枝").hits
    assert [hit.date.year for hit in hits] == [2021, 2019]
    assert hits[0].score / hits[1].score == pytest.approx(
        freshness(dt.date(2021, 1, 1)) / freshness(dt.date(2019, 1, 1)), rel=1e-3
    )


def test_multi_word_synonyms_match_as_phrases_not_as_their_words(analyzer: TextAnalyzer) -> None:
    """量化 expands to "low-bit"; an item with "low" and "bit" apart is not about quantization."""
    phrase = Item(1, title="Low-bit kernels", summary="Fast low-bit matrix kernels.")
    apart = Item(2, title="Low power chip", summary="A low power chip with an 8 bit ADC bus.")
    assert ids(small_index(analyzer, phrase, apart), "量化") == ["2021-01-01/论文/1"]


def test_glossary_phrases_score_as_phrase_queries(demo_index: SearchIndex) -> None:
    """A glossary phrase is matched through its twin token; items and scores are the phrase query's."""
    searcher = demo_index._searcher
    for phrase in [("binary", "neural", "networks"), ("core", "ml"), ("8", "比特"), ("边缘", "ai")]:
        for field in ("title", "body"):
            expected = searcher.search(
                tantivy.Query.phrase_query(demo_index._schema, field, list(phrase)), 50
            )
            twin = demo_index._phrase_query(phrase, 1.0, ((field, 1.0),))
            found = searcher.search(twin, 50) if twin is not None else None
            want = sorted(((a.segment_ord, a.doc), score) for score, a in expected.hits)
            got = sorted(((a.segment_ord, a.doc), score) for score, a in found.hits) if found else []
            assert [address for address, _ in got] == [address for address, _ in want], (phrase, field)
            assert [score for _, score in got] == pytest.approx([score for _, score in want], rel=1e-5)


def test_lightweight_is_not_quantization(analyzer: TextAnalyzer) -> None:
    light = Item(1, title="轻量化网络设计", summary="轻量化的网络结构。")
    vector = Item(2, title="向量化指令", summary="用向量化加速。")
    assert ids(small_index(analyzer, light, vector), "量化") == []


def test_paging(demo_index: SearchIndex) -> None:
    first, second = demo_index.search("量化", limit=5), demo_index.search("量化", limit=5, offset=5)
    assert ids(demo_index, "量化", limit=10) == [
        f"{hit.date}/{hit.section}/{hit.position}" for hit in (*first.hits, *second.hits)
    ]
    assert len(demo_index.search("量化", limit=500).hits) == MAX_LIMIT


def test_paging_stops_at_max_offset(analyzer: TextAnalyzer) -> None:
    """tantivy sizes its collector by offset + limit up front: 10**10 asked it for 160 GB (the process
    aborted), 2**63 - 1 overflowed (a panic). Past MAX_OFFSET no items are collected, only counted."""
    items = [Item(number, title=f"剪枝方法 {number}") for number in range(1, MAX_OFFSET + 31)]
    index = small_index(analyzer, *items)
    assert len(index.search("剪枝", limit=MAX_LIMIT, offset=MAX_OFFSET).hits) == 30
    for offset in (MAX_OFFSET + 1, 10**10, 2**63 - 1, 2**64 + 1):
        result = index.search("剪枝", limit=MAX_LIMIT, offset=offset)
        assert (result.hits, result.total) == ((), MAX_OFFSET + 30)
    assert index.search("剪枝", offset=10**10) is index.search("剪枝", offset=MAX_OFFSET + 1)  # one entry


def test_snippet_shows_the_matched_word(demo_index: SearchIndex) -> None:
    hits = demo_index.search("winograd").hits
    assert hits[0].matched[0] == "winograd"
    for hit in hits:
        assert len(hit.snippet) <= 82
        assert hit.matched[0] in (hit.title + hit.snippet).lower()


HOSTILE = [
    "C++",
    "llama-3",
    "gpt-4o",
    "title:x",
    '"',
    "NOT",
    "*",
    "10%",
    "🚀🔥",
    "",
    " ",
    "量" * 10_000,
    "a" * 10_000,
    "\x00",
    "量化\x00剪枝",
    "AND OR",
    "(",
    "\\",
    "[量化](http://x)",
    "<script>",
    "' OR 1=1 --",
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_answer_with_results_or_a_hint(demo_index: SearchIndex, query: str) -> None:
    result = demo_index.search(query)
    assert result.hits or result.hint
    assert result.to_dict()["query"] == query


def test_hostile_specifics(demo_index: SearchIndex) -> None:
    assert "cppinsights" in " ".join(hit.title.lower() for hit in demo_index.search("C++").hits)
    assert demo_index.search("").hint
    long = demo_index.search("量化" * 5_000)
    assert long.hint
    assert str(MAX_QUERY_CHARS) in long.hint
    assert demo_index.search("量化\x00剪枝").hits


def test_replacing_an_issue_replaces_its_items(analyzer: TextAnalyzer) -> None:
    index = small_index(analyzer, Item(1, title="剪枝", summary=""))
    issue = Issue(
        date=dt.date(2021, 1, 1),
        title="t",
        sections=(Section("论文", 1, items=(Item(1, title="蒸馏"),)),),
        content_hash="b" * 64,
    )
    index.replace_issues([issue])
    assert (ids(index, "剪枝"), ids(index, "蒸馏")) == ([], ["2021-01-01/论文/1"])
    index.replace_issues([], removed=[issue.date])
    assert index.size == 0
    assert index.indexed == {}


def test_every_demo_item_is_indexed(demo_index: SearchIndex, demo_issues: list[Issue]) -> None:
    assert demo_index.size == sum(issue.item_count for issue in demo_issues) == 541
    assert demo_index.indexed == {issue.date: issue.content_hash for issue in demo_issues}
    assert dataclasses.asdict(demo_index.search("量化").hits[0]).keys() >= {
        "date",
        "title",
        "url",
        "snippet",
        "score",
    }


def test_answers_are_cached_until_the_index_changes(analyzer: TextAnalyzer) -> None:
    index = small_index(analyzer, Item(1, title="剪枝", summary=""))
    first = index.search("剪枝")
    assert index.search("剪枝") is first
    assert index.search("剪枝", cached=False) is not first
    index.replace_issues(
        [
            Issue(
                date=dt.date(2021, 1, 1),
                title="t",
                sections=(Section("论文", 1, items=(Item(1, title="蒸馏"),)),),
                content_hash="c" * 64,
            )
        ]
    )
    assert index.search("剪枝").hits == ()
