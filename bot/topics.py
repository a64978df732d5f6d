"""A reader's topic words, understood the way search understands them.

Every channel lets readers choose topics (WeChat `订阅 量化`, Telegram `/subscribe 量化` and its keyboard,
the email preference page, the console). They all go through `TopicVocabulary`, so a topic means the
same everywhere:

- a word that is a term of a glossary concept becomes that concept's label (`quantization`, `量化`,
  `模型量化` -> 量化), through the search analyzer (width, case, Traditional -> Simplified);
- another word is a topic of its own when the archive's search finds it (`qat`, `yolo`): the broadcast's
  TopicMatcher will find it in an issue the same way;
- anything else is refused with the closest known topics as suggestions, and nothing is stored.

What a reader may store is bounded: at most MAX_TOPICS topics of at most MAX_TOPIC_LENGTH characters
(storage/subscribers.py), and a request longer than MAX_REQUEST_CHARS is refused whole before any
analysis, so 10,000 characters cost nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.subscribers import MAX_TOPIC_LENGTH, MAX_TOPICS

if TYPE_CHECKING:
    from storage.search.index import SearchIndex

# A request of more than this is not a list of topics (20 topics of a few characters and separators).
MAX_REQUEST_CHARS = 400
# How many issues "the last issues" are, for the topics offered to toggle, and how many are offered.
RECENT_ISSUES = 6
POPULAR_TOPICS = 8
SUGGESTIONS = 3
# A topic is a word: letters (any script), digits and the joiners of names such as risc-v, c++, .net.
_WORD = re.compile(r"[\w+#.\-]+")
_SEPARATORS = re.compile(r"[\s,;，；、]+")
MIN_OWN_TOPIC_CHARS = 2
# How far down each topic's search answer the popular ones are counted (a recent issue's items rank
# a little higher than old ones, so the recent matches are near the top).
_POPULAR_HITS = 200


@dataclass(frozen=True, slots=True)
class Refused:
    word: str  # as the reader wrote it, cut to MAX_TOPIC_LENGTH for the reply
    reason: str  # one line, in Chinese, for the reader
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Understood:
    """What a reader's words mean: known topics (in the order given, no repeats) and the refused words."""

    topics: tuple[str, ...] = ()
    refused: tuple[Refused, ...] = ()
    too_long: bool = False  # the whole request was over MAX_REQUEST_CHARS: nothing was looked at


@dataclass(frozen=True, slots=True)
class Change:
    """A reader's topics after adding or removing some, and what could not be done."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    over_cap: tuple[str, ...] = ()  # asked for, but the reader already has MAX_TOPICS
    absent: tuple[str, ...] = ()  # asked to remove, but not among the reader's topics
    understood: Understood = field(default_factory=Understood)

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _admit(after: list[str], topics: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Append the new `topics` to `after` up to MAX_TOPICS: (those added, those over the cap)."""
    added: list[str] = []
    over: list[str] = []
    for topic in topics:
        if topic in after:
            continue
        if len(after) >= MAX_TOPICS:
            over.append(topic)
            continue
        after.append(topic)
        added.append(topic)
    return tuple(added), tuple(over)


def split_words(text: str) -> list[str]:
    return [word for word in _SEPARATORS.split(text.strip()) if word]


class TopicVocabulary:
    """Built on the process' search index; answers without I/O (a WeChat reply must be quick)."""

    def __init__(self, index: SearchIndex) -> None:
        self._index = index
        self._analyzer = index.analyzer
        self._glossary = index.glossary
        # Every glossary term as text (both spellings of a phrase: 模型量化, knowledge distillation) -> label.
        self._terms: dict[str, str] = {}
        for concept in self._glossary.concepts:
            for phrase in concept.terms:
                for spelled in ("".join(phrase), " ".join(phrase)):
                    self._terms.setdefault(spelled, concept.label)
        self._popular: tuple[int, tuple[str, ...]] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(concept.label for concept in self._glossary.concepts))

    def canonical(self, word: str) -> str | None:
        """The topic `word` stands for, or None when it is not a topic anyone could get items for."""
        normalized = " ".join(self._analyzer.normalize(word).split())
        if not normalized or len(normalized) > MAX_TOPIC_LENGTH or not _WORD.fullmatch(normalized):
            return None
        phrase = tuple(self._analyzer.words(normalized))
        if not phrase:
            return None
        concept = self._glossary.concept_of_term(phrase)
        if concept is not None:
            return concept.label
        # A word of one character (量, a) finds half the archive: it is no topic, and gets suggestions.
        if len(normalized) >= MIN_OWN_TOPIC_CHARS and self._index.search(normalized, limit=1).hits:
            return normalized
        return None

    def suggest(self, word: str, limit: int = SUGGESTIONS) -> tuple[str, ...]:
        """Known topics close to `word` (spelling, or a shared part), else the popular ones."""
        normalized = self._analyzer.normalize(word).strip()[:MAX_TOPIC_LENGTH]
        found: dict[str, None] = {}
        if normalized:
            for term in difflib.get_close_matches(normalized, list(self._terms), n=limit * 3, cutoff=0.5):
                found[self._terms[term]] = None
            for term, label in self._terms.items():
                if len(found) >= limit:
                    break
                shorter, longer = sorted((term, normalized), key=len)
                if len(shorter) >= 2 and shorter in longer:
                    found[label] = None
        for label in self.popular():
            if len(found) >= limit:
                break
            found[label] = None
        return tuple(found)[:limit]

    def understand(self, words: Iterable[str]) -> Understood:
        topics: dict[str, None] = {}
        refused: list[Refused] = []
        for word in words:
            shown = word if len(word) <= MAX_TOPIC_LENGTH else word[: MAX_TOPIC_LENGTH - 1] + "…"
            if len(word) > MAX_TOPIC_LENGTH:
                refused.append(Refused(shown, f"话题最长 {MAX_TOPIC_LENGTH} 个字"))
                continue
            topic = self.canonical(word)
            if topic is None:
                refused.append(Refused(shown, "往期没有相关内容", self.suggest(word)))
            else:
                topics[topic] = None
        return Understood(tuple(topics), tuple(refused))

    def understand_text(self, text: str) -> Understood:
        if len(text) > MAX_REQUEST_CHARS:
            return Understood(too_long=True)
        return self.understand(split_words(text))

    def add(self, current: Sequence[str], text: str) -> Change:
        understood = self.understand_text(text)
        before = tuple(current)
        after = list(before)
        added, over = _admit(after, understood.topics)
        return Change(before, tuple(after), added=added, over_cap=over, understood=understood)

    def remove(self, current: Sequence[str], text: str) -> Change:
        """Topics named in `text` (as written, or what they stand for) taken off the reader's list."""
        before = tuple(current)
        if len(text) > MAX_REQUEST_CHARS:
            return Change(before, before, understood=Understood(too_long=True))
        words = split_words(text)
        after = list(before)
        removed: list[str] = []
        absent: list[str] = []
        for word in words:
            names = {word, self._analyzer.normalize(word)}
            topic = self.canonical(word) if len(word) <= MAX_TOPIC_LENGTH else None
            if topic:
                names.add(topic)
            hit = [stored for stored in after if stored in names or self._analyzer.normalize(stored) in names]
            if not hit:
                absent.append(word[:MAX_TOPIC_LENGTH])
            for stored in hit:
                after.remove(stored)
                removed.append(stored)
        return Change(before, tuple(after), removed=tuple(removed), absent=tuple(absent))

    def choose(self, current: Sequence[str], *, keep: Sequence[str], words: Sequence[str]) -> Change:
        """A reader's topics after they ticked `keep` and wrote `words`: the topics they have and ticked
        stay as stored (also one the vocabulary would not take today: it was theirs), the others ticked or
        written are understood by the vocabulary, the unticked ones go. New ones come after the kept ones,
        up to MAX_TOPICS; the rest are `over_cap`. The email preference page's rule, and the console's, where
        `keep` is what the editor left in the field."""
        before = tuple(current)
        ticked = set(keep)
        after = [topic for topic in before if topic in ticked]
        fresh = [word for word in dict.fromkeys(keep) if word not in before]
        understood = self.understand([*fresh, *words])
        added, over = _admit(after, understood.topics)
        removed = tuple(topic for topic in before if topic not in after)
        return Change(
            before,
            tuple(after),
            added=added,
            removed=removed,
            over_cap=over,
            understood=understood,
        )

    def toggle(self, current: Sequence[str], topic: str) -> Change:
        """A keyboard button: `topic` (one of `popular`) on if it was off, off if it was on."""
        if topic in current:
            return self.remove(current, topic)
        return self.add(current, topic)

    def popular(self, limit: int = POPULAR_TOPICS) -> tuple[str, ...]:
        """The glossary topics with the most items in the last RECENT_ISSUES issues, most first.

        Worked out once per index generation: about one search per concept.
        """
        generation = self._index.generation
        if self._popular is None or self._popular[0] != generation:
            recent = set(sorted(self._index.indexed)[-RECENT_ISSUES:])
            counts: Counter[str] = Counter()
            for label in self.labels:
                hits = self._index.every_hit(label, most=_POPULAR_HITS)
                found = sum(1 for hit in hits if hit.date in recent)
                if found:
                    counts[label] = found
            ranked = tuple(label for label, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0])))
            self._popular = (generation, ranked)
        return self._popular[1][:limit]


def describe_change(change: Change, *, verb: str) -> str:
    """One reply for every channel: what was done, what was refused and why, and the cap when it bit."""
    lines: list[str] = []
    understood = change.understood
    if understood.too_long:
        return (
            f"太长了：一次最多 {MAX_REQUEST_CHARS} 个字，每个话题最多 {MAX_TOPIC_LENGTH} 个字。什么也没有改。"
        )
    if change.added:
        lines.append(f"已{verb}：{'、'.join(change.added)}")
    if change.removed:
        lines.append(f"已退订：{'、'.join(change.removed)}")
    for refused in understood.refused:
        line = f"『{refused.word}』没有订上：{refused.reason}"
        if refused.suggestions:
            line += f"，试试：{'、'.join(refused.suggestions)}"
        lines.append(line)
    if change.over_cap:
        lines.append(
            f"每人最多 {MAX_TOPICS} 个话题，已满，没有加上：{'、'.join(change.over_cap)}。先退订几个再加。"
        )
    if change.absent:
        lines.append(f"你没有订阅这些话题：{'、'.join(change.absent)}")
    if not lines:
        lines.append("没有变化：这些话题你已经订阅了。")
    lines.append(describe_topics(change.after))
    return "\n".join(lines)


# A reply lists at most this many refused, absent or over-the-cap words (a message of 200 one-letter words
# is refused word by word); the rest are counted.
SHOWN_WORDS = 5


def change_lines(change: Change) -> str:
    """What a change did and refused, as plain text without the reader's topics (the caller adds those,
    or says the reader is not subscribed): every channel's reply. Refused and absent words are shown once
    each and SHOWN_WORDS at most, without characters that print nothing (a NUL, a direction override);
    the rest are counted."""
    understood = change.understood
    if understood.too_long:
        # Refused whole: the limits are all the reader needs, the cap of topics too.
        return describe_change(change, verb="订阅") + f"\n每人最多 {MAX_TOPICS} 个话题。"
    distinct = tuple({_printable(item.word): item for item in understood.refused}.items())
    refused = tuple(dataclasses.replace(item, word=word) for word, item in distinct[:SHOWN_WORDS])
    shown = dataclasses.replace(
        change,
        understood=dataclasses.replace(understood, refused=refused),
        absent=tuple(_printable(word) for word in change.absent[:SHOWN_WORDS]),
        over_cap=change.over_cap[:SHOWN_WORDS],
    )
    text = describe_change(shown, verb="订阅").removesuffix(describe_topics(change.after))
    lines = [line for line in text.split("\n") if line]
    for hidden, what in (
        (len(distinct) - len(refused), "个词没有订上"),
        (len(change.absent) - SHOWN_WORDS, "个你没有订阅的话题"),
        (len(change.over_cap) - SHOWN_WORDS, "个话题因为已满没有加上"),
    ):
        if hidden > 0:
            lines.append(f"另有 {hidden} {what}。")
    return "\n".join(lines)


def _printable(word: str) -> str:
    return "".join(char for char in word if char.isprintable() and not char.isspace()) or "?"


def describe_topics(topics: Sequence[str]) -> str:
    if not topics:
        return "你现在没有选话题：每期都会收到完整的简报。"
    return (
        f"你关注的话题（{len(topics)}/{MAX_TOPICS}）：{'、'.join(topics)}。"
        "有这些话题的一期才推送给你，相关条目排在最前。"
    )
