"""The glossary: equivalents both ways, narrower words down strongly and up weakly, phrases whole."""

from __future__ import annotations

from storage.search.glossary import BROADER, EQUIVALENT, NARROWER, Glossary
from storage.search.text import TextAnalyzer

SMALL = """
version = 7
[[concept]]
name = "quantization"
terms = ["量化", "quantization"]
narrower = ["int8", "low bit", "二值化"]
"""


def load(analyzer: TextAnalyzer, text: str | None = None) -> Glossary:
    return Glossary.load(lambda entry: analyzer.words(analyzer.normalize(entry)), text)


def test_expansion_weights_by_direction(analyzer: TextAnalyzer) -> None:
    glossary = load(analyzer, SMALL)
    assert glossary.version == "7"
    down = {expansion.phrase: expansion.weight for expansion in glossary.expand(("量化",))}
    assert down == {
        ("quantization",): EQUIVALENT,
        ("int8",): NARROWER,
        ("low", "bit"): NARROWER,
        ("二值化",): NARROWER,
    }
    up = {expansion.phrase: expansion.weight for expansion in glossary.expand(("int8",))}
    assert up == {("量化",): BROADER, ("quantization",): BROADER}
    assert EQUIVALENT > NARROWER > BROADER


def test_multi_word_entries_are_found_as_phrases(analyzer: TextAnalyzer) -> None:
    glossary = load(analyzer, SMALL)
    assert glossary.matches(["fast", "low", "bit", "kernels"]) == [("low", "bit")]
    assert glossary.matches(["fast", "low-bit", "kernels"]) == []  # a hyphenated word is one token
    assert glossary.matches(["low", "power", "bit"]) == []


def test_the_shipped_glossary_links_the_cross_lingual_pairs(analyzer: TextAnalyzer) -> None:
    glossary = load(analyzer)
    pairs = [
        ("量化", "quantization"),
        ("剪枝", "pruning"),
        ("蒸馏", "distillation"),
        ("编译器", "compiler"),
        ("目标检测", "detection"),
        ("二值化", "binarization"),
    ]
    for chinese, english in pairs:
        assert (english,) in {expansion.phrase for expansion in glossary.expand((chinese,))}
        assert (chinese,) in {expansion.phrase for expansion in glossary.expand((english,))}
    assert ("knowledge", "distillation") in {expansion.phrase for expansion in glossary.expand(("蒸馏",))}
