"""The cross-lingual glossary (glossary.toml): which words a query also looks for, and how strongly.

A query word that is a `term` of a concept brings in the concept's other terms (weight EQUIVALENT)
and its narrower words (NARROWER); a query word that is only a `narrower` word of a concept brings in
that concept's terms (BROADER). Entries of several words are phrases. The file is data that editors
extend; its version is part of the index's identity.
"""

from __future__ import annotations

import tomllib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files

GLOSSARY_FILE = "glossary.toml"
# How much an expansion counts next to the reader's own word (weight 1.0).
EQUIVALENT = 0.5
NARROWER = 0.4
BROADER = 0.1

Phrase = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Concept:
    name: str
    terms: tuple[Phrase, ...]
    narrower: tuple[Phrase, ...]
    # The concept's first term as the file writes it (量化, int8): the topic a reader's word for it becomes.
    label: str = ""


@dataclass(frozen=True, slots=True)
class Expansion:
    phrase: Phrase
    weight: float
    concept: str


class Glossary:
    def __init__(self, concepts: Sequence[Concept], version: str) -> None:
        self.version = version
        self.concepts = tuple(concepts)
        self._as_term: dict[Phrase, list[Concept]] = defaultdict(list)
        self._as_narrower: dict[Phrase, list[Concept]] = defaultdict(list)
        for concept in self.concepts:
            for phrase in concept.terms:
                self._as_term[phrase].append(concept)
            for phrase in concept.narrower:
                self._as_narrower[phrase].append(concept)
        self.longest = max((len(phrase) for phrase in [*self._as_term, *self._as_narrower]), default=1)

    @classmethod
    def load(cls, analyze: Callable[[str], list[str]], text: str | None = None) -> Glossary:
        """Parse glossary.toml, turning every entry into the token sequence the index holds."""
        data = tomllib.loads(
            text if text is not None else (files("storage.search") / GLOSSARY_FILE).read_text("utf-8")
        )

        def phrases(entries: list[str]) -> tuple[Phrase, ...]:
            tokens = (tuple(analyze(entry)) for entry in entries)
            return tuple(dict.fromkeys(phrase for phrase in tokens if phrase))

        concepts = [
            Concept(
                name=str(entry["name"]),
                terms=phrases(entry["terms"]),
                narrower=phrases(entry.get("narrower", [])),
                label=str(entry["terms"][0]) if entry["terms"] else str(entry["name"]),
            )
            for entry in data.get("concept", [])
        ]
        return cls(concepts, version=str(data.get("version", "0")))

    def matches(self, tokens: Sequence[str]) -> list[Phrase]:
        """The glossary phrases found in a token sequence, longest first at each position."""
        found: list[Phrase] = []
        for start in range(len(tokens)):
            for length in range(min(self.longest, len(tokens) - start), 0, -1):
                phrase = tuple(tokens[start : start + length])
                if phrase in self._as_term or phrase in self._as_narrower:
                    found.append(phrase)
                    break
        return list(dict.fromkeys(found))

    def concept_of_term(self, phrase: Phrase) -> Concept | None:
        """The first concept that has `phrase` as one of its terms (not only as a narrower word)."""
        found = self._as_term.get(phrase)
        return found[0] if found else None

    def expand(self, phrase: Phrase) -> list[Expansion]:
        """What else to look for when a query contains `phrase`, strongest weight per phrase."""
        weights: dict[Phrase, Expansion] = {}

        def offer(candidate: Phrase, weight: float, concept: Concept) -> None:
            if candidate != phrase and (candidate not in weights or weights[candidate].weight < weight):
                weights[candidate] = Expansion(candidate, weight, concept.name)

        for concept in self._as_term.get(phrase, []):
            for other in concept.terms:
                offer(other, EQUIVALENT, concept)
            for other in concept.narrower:
                offer(other, NARROWER, concept)
        for concept in self._as_narrower.get(phrase, []):
            for other in concept.terms:
                offer(other, BROADER, concept)
        return list(weights.values())
