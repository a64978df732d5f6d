"""Relevance evaluation: precision@10 and R-precision of a judged query set.

A judged set is JSON: {"queries": [{"query", "kind", "relevant": ["DATE/SECTION/POSITION", ...]}]}
(tests/storage/search/relevance/relevance.json). Used by scripts/eval_search.py and by the test suite
with floors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.search.index import SearchIndex
from storage.search.results import MAX_LIMIT, SearchHit

PRECISION_AT = 10


@dataclass(frozen=True, slots=True)
class QueryScore:
    query: str
    kind: str
    relevant: int
    precision_at_10: float
    r_precision: float
    missed: tuple[str, ...]  # relevant items not in the top R
    wrong: tuple[str, ...]  # items in the top R that are not relevant


def hit_id(hit: SearchHit) -> str:
    return f"{hit.date.isoformat()}/{hit.section}/{hit.position}"


def ranked_ids(index: SearchIndex, query: str, depth: int) -> list[str]:
    ids: list[str] = []
    while len(ids) < depth:
        page = index.search(query, limit=MAX_LIMIT, offset=len(ids)).hits
        if not page:
            break
        ids.extend(hit_id(hit) for hit in page)
    return ids[:depth]


def evaluate(index: SearchIndex, judged: dict[str, Any]) -> list[QueryScore]:
    scores = []
    for entry in judged["queries"]:
        relevant = set(entry["relevant"])
        ranking = ranked_ids(index, entry["query"], max(len(relevant), PRECISION_AT))
        top_r = ranking[: len(relevant)]
        scores.append(
            QueryScore(
                query=entry["query"],
                kind=entry.get("kind", ""),
                relevant=len(relevant),
                precision_at_10=sum(1 for item in ranking[:PRECISION_AT] if item in relevant)
                / min(PRECISION_AT, len(relevant)),
                r_precision=sum(1 for item in top_r if item in relevant) / len(relevant),
                missed=tuple(sorted(relevant - set(top_r))),
                wrong=tuple(item for item in top_r if item not in relevant),
            )
        )
    return scores


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
