"""Search relevance on the judged query set: precision@10 and R-precision per query, and their means.

    .venv/bin/python scripts/eval_search.py [--judged FILE.json] [--misses]

Indexes the bundled demo issues and the unseen test issues (tests/content/unseen), the corpus the
judgements were made on. precision@10 divides by min(10, R) so a query with 5 relevant items can score 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file
from storage.search.evaluation import evaluate, mean
from storage.search.index import SearchIndex

ROOT = Path(__file__).resolve().parents[1]


def judged_corpus() -> list[Path]:
    unseen = [
        path for path in (ROOT / "tests" / "content" / "unseen").glob("*.md") if path.stem[:1].isdigit()
    ]
    return sorted(demo_issue_dir().glob("*.md")) + sorted(unseen)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--judged", type=Path, default=ROOT / "tests" / "storage" / "search" / "relevance" / "relevance.json"
    )
    parser.add_argument("--misses", action="store_true", help="list missed and wrongly ranked items")
    args = parser.parse_args()
    index = SearchIndex()
    index.replace_issues(parse_issue(read_issue_file(path)) for path in judged_corpus())
    scores = evaluate(index, json.loads(args.judged.read_text(encoding="utf-8")))
    print(f"{'query':24s} {'kind':14s} {'R':>3s} {'P@10':>6s} {'R-prec':>7s}")
    for score in scores:
        figures = f"{score.relevant:3d} {score.precision_at_10:6.2f} {score.r_precision:7.2f}"
        print(f"{score.query:24s} {score.kind:14s} {figures}")
        if args.misses:
            print(f"    missed: {' '.join(score.missed)}\n    wrong:  {' '.join(score.wrong)}")
    cross = [score for score in scores if score.kind == "cross-lingual"]
    print(
        f"\nmean P@10 {mean([s.precision_at_10 for s in scores]):.3f}   "
        f"mean R-precision {mean([s.r_precision for s in scores]):.3f}   "
        f"cross-lingual mean R-precision {mean([s.r_precision for s in cross]):.3f} ({len(cross)} queries)"
    )


if __name__ == "__main__":
    main()
