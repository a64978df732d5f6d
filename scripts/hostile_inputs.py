"""Time and memory the parser needs for hostile Markdown at the size limit (content/source.py).

    .venv/bin/python scripts/hostile_inputs.py

Each case is a file of exactly MAX_ISSUE_BYTES under a valid title and section; each is parsed in its
own process so the peak memory printed is that case's. Larger files are refused before parsing.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time

from content.errors import JianbaoError
from content.parser import parse_issue
from content.source import MAX_ISSUE_BYTES, decode_issue

HEAD = "# 嵌入式AI简报 (2020-01-01)\n\n## 论文\n\n"
PATTERNS = {
    "bullets '- [' one per line": "- [\n",
    "'- [' on one line": "- [",
    "nested bullets": None,
    "unclosed '['": "[",
    "links '[a](b) '": "[a](b) ",
    "emphasis '*a'": "*a",
    "backticks '`a'": "`a",
    "table rows": "|x|\n",
    "bare URLs": "https://a.example/c ",
    "inline html '<font>'": "<font>",
}


def build(pattern: str | None) -> bytes:
    room = MAX_ISSUE_BYTES - len(HEAD.encode())
    if pattern is None:
        body, depth = "", 0
        while len(body) + 2 * depth + 4 < room:
            body += "  " * depth + "- x\n"
            depth += 1
    else:
        body = (pattern * (room // len(pattern.encode()) + 1)).encode()[:room].decode(errors="ignore")
    return (HEAD + "- " + body if pattern and not pattern.startswith(("-", "|")) else HEAD + body).encode()[
        :MAX_ISSUE_BYTES
    ]


def run(name: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    data = build(PATTERNS[name])
    start = time.perf_counter()
    try:
        issue = parse_issue(decode_issue(data))
        outcome = f"{issue.item_count} items"
    except JianbaoError as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        json.dumps(
            {"case": name, "bytes": len(data), "seconds": seconds, "peak_mb": peak_mb, "outcome": outcome}
        )
    )


def main() -> None:
    print(f"limit: {MAX_ISSUE_BYTES:,} bytes")
    print(f"{'case':30s} {'bytes':>9s} {'seconds':>8s} {'peak MB':>8s}  outcome")
    for name in PATTERNS:
        queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        process = multiprocessing.Process(target=run, args=(name, queue))
        process.start()
        result = json.loads(queue.get(timeout=300))
        process.join()
        figures = f"{result['bytes']:9,d} {result['seconds']:8.2f} {result['peak_mb']:8.0f}"
        print(f"{result['case']:30s} {figures}  {result['outcome']}")


if __name__ == "__main__":
    main()
