"""A reader's topic words (bot/topics.py) as the search understands them, on the demo archive."""

from __future__ import annotations

import pytest

from bot.topics import MAX_REQUEST_CHARS, SHOWN_WORDS, TopicVocabulary, change_lines, describe_topics
from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file
from storage.search.index import SearchIndex
from storage.subscribers import MAX_TOPICS


@pytest.fixture(scope="module")
def vocabulary() -> TopicVocabulary:
    index = SearchIndex()
    index.replace_issues(parse_issue(read_issue_file(path)) for path in sorted(demo_issue_dir().glob("*.md")))
    return TopicVocabulary(index)


@pytest.mark.parametrize(
    ("word", "topic"),
    [
        ("量化", "量化"),
        ("quantization", "量化"),
        ("Quantization", "量化"),
        ("模型量化", "量化"),
        ("ＩＮＴ８", "int8"),  # width and case folded, then the glossary's own concept
        ("pruning", "剪枝"),
        ("剪枝", "剪枝"),
        ("ncnn", "ncnn"),  # no glossary concept, but the archive has it: a topic of its own
    ],
)
def test_words_become_the_topic_search_means(vocabulary: TopicVocabulary, word: str, topic: str) -> None:
    assert vocabulary.canonical(word) == topic


@pytest.mark.parametrize("word", ["园艺", "量", "<script>", "🚀", "量化🚀", "a" * 33, ""])
def test_words_no_issue_could_be_about_are_not_topics(vocabulary: TopicVocabulary, word: str) -> None:
    assert vocabulary.canonical(word) is None


def test_an_unknown_word_gets_close_topics(vocabulary: TopicVocabulary) -> None:
    assert vocabulary.suggest("蒸溜")[0] == "蒸馏"
    assert vocabulary.suggest("量")[0] == "量化"
    # Nothing close: the popular topics of the last issues.
    assert vocabulary.suggest("xyzzyq") == vocabulary.popular(3)


def test_adding_and_removing_understands_every_spelling(vocabulary: TopicVocabulary) -> None:
    added = vocabulary.add((), "quantization，剪枝、量化 园艺")
    assert added.after == ("量化", "剪枝")
    assert [refused.word for refused in added.understood.refused] == ["园艺"]
    removed = vocabulary.remove(added.after, "Quantization 蒸馏")
    assert removed.after == ("剪枝",)
    assert removed.removed == ("量化",)
    assert removed.absent == ("蒸馏",)


def test_the_cap_is_kept_and_said(vocabulary: TopicVocabulary) -> None:
    full = tuple(vocabulary.labels[:MAX_TOPICS])
    change = vocabulary.add(full, " ".join(vocabulary.labels[MAX_TOPICS:]))
    assert change.after == full
    assert change.over_cap == tuple(vocabulary.labels[MAX_TOPICS:])
    assert f"每人最多 {MAX_TOPICS} 个话题" in change_lines(change)


def test_a_request_too_long_is_refused_whole(vocabulary: TopicVocabulary) -> None:
    change = vocabulary.add(("量化",), "剪枝 " * MAX_REQUEST_CHARS)
    assert change.after == ("量化",)
    assert change.understood.too_long
    assert change_lines(change).startswith("太长了")


def test_a_reply_names_a_few_refused_words_and_counts_the_rest(vocabulary: TopicVocabulary) -> None:
    words = [f"zz{n}q" for n in range(40)]
    lines = change_lines(vocabulary.add((), " ".join(words))).split("\n")
    assert len(lines) == SHOWN_WORDS + 1
    assert lines[-1] == f"另有 {40 - SHOWN_WORDS} 个词没有订上。"


def test_choose_keeps_ticked_topics_and_understands_new_words(vocabulary: TopicVocabulary) -> None:
    change = vocabulary.choose(
        ("老话题", "量化", "剪枝"), keep=("老话题", "剪枝", "pruning"), words=("int8",)
    )
    assert change.after == ("老话题", "剪枝", "int8")
    assert change.removed == ("量化",)
    assert describe_topics(change.after).startswith(f"你关注的话题（3/{MAX_TOPICS}）")


def test_popular_topics_come_from_the_last_issues(vocabulary: TopicVocabulary) -> None:
    popular = vocabulary.popular()
    assert 0 < len(popular) <= 8
    assert set(popular) <= set(vocabulary.labels)
