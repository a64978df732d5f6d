"""Text -> search tokens, the same way for items at index time and for a reader's query.

Normalisation: NFKC (full-width ＩＮＴ８ -> int8), lower case, Traditional -> Simplified (編譯器 ->
编译器, with OpenCC's maintained tables), C++ -> cpp. Segmentation: rjieba, the Rust port of jieba
with jieba's API and dictionary, about ten times faster than pure-Python jieba, plus our versioned
domain dictionary (dictionary.txt). Items are segmented in search mode, so a compound such as
量化感知训练 is indexed with its parts and 量化 still finds it; queries are segmented the same way, so a
query compound matches both the whole word and its parts. Two-character words (量化, 剪枝, 端侧) are
ordinary tokens here, which SQLite's trigram tokenizer could not match.
"""

from __future__ import annotations

import re
import unicodedata
from importlib.resources import files

import opencc
import rjieba

DICTIONARY_FILE = "dictionary.txt"
_VERSION_LINE = re.compile(r"^#\s*version:\s*(\S+)", re.MULTILINE)
# Control characters (NUL included) never reach the segmenter or the index.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Markdown syntax that is not words: link targets, emphasis, code ticks, heading and quote markers.
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\((?:[^()]|\([^)]*\))*\)")
_MARKDOWN_NOISE = re.compile(r"[*_`#>|]+")
_CPP = re.compile(r"\b([a-z])\+\+")
_LETTERS_OR_DIGITS = re.compile(r"[a-z]+|[0-9]+")
_LETTER_DIGIT = re.compile(r"[a-z][0-9]|[0-9][a-z]")
# A token worth indexing has a letter, digit or CJK character; punctuation and spaces are dropped.
_WORDLIKE = re.compile(r"[0-9a-z\u3400-\u9fff\uf900-\ufaff\u00c0-\u024f\u0370-\u03ff]")
STOPWORDS = frozenset(
    [
        "的",
        "了",
        "在",
        "是",
        "和",
        "与",
        "及",
        "等",
        "中",
        "上",
        "下",
        "对",
        "为",
        "于",
        "也",
        "就",
        "都",
        "而",
        "及其",
        "以及",
        "或",
        "一个",
        "一种",
        "这",
        "那",
        "这个",
        "该",
        "其",
        "将",
        "把",
        "被",
        "从",
        "到",
        "由",
        "让",
        "使",
        "可",
        "可以",
        "能",
        "能够",
        "会",
        "并",
        "并且",
        "但",
        "但是",
        "如",
        "如何",
        "什么",
        "通过",
        "进行",
        "我们",
        "你",
        "他",
        "她",
        "它",
        "他们",
        "本文",
        "文章",
        "以",
        "之",
        "所",
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "we",
        "our",
        "you",
        "your",
        "they",
        "their",
        "which",
        "what",
        "how",
        "can",
        "via",
        "into",
        "than",
        "then",
        "also",
        "not",
        "no",
    ]
)


def dictionary_text() -> str:
    return (files("storage.search") / DICTIONARY_FILE).read_text(encoding="utf-8")


def dictionary_version() -> str:
    match = _VERSION_LINE.search(dictionary_text())
    return match.group(1) if match else "0"


class TextAnalyzer:
    """Normaliser and segmenter, built once per process (loading the dictionaries takes ~100 ms)."""

    def __init__(self) -> None:
        self._to_simplified = opencc.OpenCC("t2s")
        self._jieba = rjieba.Jieba()
        for line in dictionary_text().splitlines():
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            word = self.normalize(parts[0])
            frequency = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            tag = parts[2] if len(parts) > 2 else None
            self._jieba.add_word(word, frequency, tag)

    def normalize(self, text: str) -> str:
        text = _CONTROL.sub(" ", text)
        text = unicodedata.normalize("NFKC", text).lower()
        text = self._to_simplified.convert(text)
        return _CPP.sub(r"\1pp", text)

    def words(self, normalized: str) -> list[str]:
        """The words of normalised text in precise mode, stopwords and punctuation dropped."""
        return [word for word, _, _ in self._jieba.tokenize(normalized, "default", True) if _keep(word)]

    def positioned(self, text: str) -> list[tuple[str, int, int, int]]:
        """Index tokens of raw text: (token, position, start, end).

        Each precise-mode word gets the next position; the sub-words that spell it (量化感知训练 -> 量化,
        感知, 训练; tensorrt7 -> tensorrt, 7) share that position, so a query finds either the whole or
        a part, and phrases of whole words stay adjacent.
        """
        normalized = self.normalize(text)
        tokens: list[tuple[str, int, int, int]] = []
        # Sub-words share their compound's position.
        position = -1
        for word, start, end in self._jieba.tokenize(normalized, "default", True):
            if not _keep(word):
                continue
            position += 1
            tokens.append((word, position, start, end))
            for part in self.parts(word):
                offset = start + word.find(part)
                tokens.append((part, position, offset, offset + len(part)))
        return tokens

    def parts(self, word: str) -> list[str]:
        """The sub-words that spell a compound left to right (量化感知训练 -> 量化 感知 训练), or [].

        Only a full cover counts: 轻量化 (lightweight) holds the dictionary word 量化 but is not made of
        it (轻量 + 化), so it must not be indexed as 量化.
        """
        found = [
            (part, start, end)
            for part, start, end in self._jieba.tokenize(word, "search", True)
            if part != word
        ]
        found += [
            (match.group(), match.start(), match.end())
            for match in _LETTERS_OR_DIGITS.finditer(word)
            if match.group() != word and _LETTER_DIGIT.search(word)
        ]
        found = [(part, start, end) for part, start, end in found if _keep(part)]
        cover: list[str] = []
        at = 0
        while at < len(word):
            choices = [(end, part) for part, start, end in found if start == at]
            if not choices:
                return []
            end, part = max(choices)
            cover.append(part)
            at = end
        return cover if len(cover) > 1 else []


def _keep(token: str) -> bool:
    return bool(_WORDLIKE.search(token)) and token not in STOPWORDS and not token.isspace()


def plain_text(markdown: str) -> str:
    """The words of a Markdown fragment: link text kept, URLs and emphasis markers dropped."""
    return _MARKDOWN_NOISE.sub(" ", _MARKDOWN_LINK.sub(r"\1", markdown))
