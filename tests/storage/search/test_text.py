"""Normalisation and segmentation: the same tokens for an item and for a reader's query."""

from __future__ import annotations

import pytest

from storage.search.text import TextAnalyzer, dictionary_version, plain_text


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("ＩＮＴ８量化", "int8量化"),  # full-width letters and digits
        ("編譯器與剪枝", "编译器与剪枝"),  # Traditional -> Simplified
        ("C++ Insights", "cpp insights"),
        ("a\x00b\x07c", "a b c"),  # control characters never reach the segmenter
    ],
)
def test_normalize(analyzer: TextAnalyzer, raw: str, normalized: str) -> None:
    assert analyzer.normalize(raw) == normalized


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("INT8量化", ["int8", "量化"]),
        ("NPU端侧", ["npu", "端侧"]),
        ("ncnn新增int4", ["ncnn", "新增", "int4"]),
        ("骁龙888的低比特量化感知训练", ["骁龙", "888", "低比特", "量化感知训练"]),
        ("Knowledge Distillation for the edge", ["knowledge", "distillation", "edge"]),  # stopwords dropped
    ],
)
def test_words_of_mixed_runs(analyzer: TextAnalyzer, text: str, words: list[str]) -> None:
    assert analyzer.words(analyzer.normalize(text)) == words


def test_compounds_are_indexed_with_the_parts_that_spell_them(analyzer: TextAnalyzer) -> None:
    tokens = analyzer.positioned("量化感知训练和TensorRT7")
    assert [(token, position) for token, position, _, _ in tokens] == [
        ("量化感知训练", 0),
        ("量化", 0),
        ("感知", 0),
        ("训练", 0),
        ("tensorrt7", 1),
        ("tensorrt", 1),
        ("7", 1),
    ]


def test_a_word_that_merely_contains_another_is_not_indexed_as_it(analyzer: TextAnalyzer) -> None:
    """轻量化 (lightweight) holds 量化 (quantization) but is not made of it."""
    assert "量化" not in {token for token, *_ in analyzer.positioned("轻量化网络设计")}
    assert "量化" not in {token for token, *_ in analyzer.positioned("向量化指令")}


def test_offsets_point_into_the_normalised_text(analyzer: TextAnalyzer) -> None:
    text = "端侧NPU推理"
    for token, _, start, end in analyzer.positioned(text):
        assert analyzer.normalize(text)[start:end] == token


def test_dictionary_is_versioned() -> None:
    assert dictionary_version() != "0"


def test_plain_text_drops_markdown() -> None:
    assert plain_text("**量化**见[论文](https://x.example/a_(b))和`int8`") == " 量化 见论文和 int8 "
