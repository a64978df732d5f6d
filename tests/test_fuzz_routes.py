"""The CI sample of scripts/fuzz_routes.py: every public route fuzzed with a few dozen generated requests
against a real `jianbao serve` (and its fakes), and schemathesis on the admin API's OpenAPI document.

The full run (10,000 requests per route) is `.venv/bin/python scripts/fuzz_routes.py`; this sample runs
the same script with a small --per-route so that it stays well under a minute, and holds it to the same
verdict: no 5xx, the server alive, nothing stored by a refused request, no request that must be refused
(a console request without a session or CSRF pair, a wrong password) accepted, schemathesis passed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fuzz_routes.py"
PER_ROUTE = 40
# A guard against a hang, not a speed requirement: the sample takes about half a minute.
HANG_GUARD_SECONDS = 600
ROW = re.compile(
    r"^(?P<route>[a-z-]+)\s+(?P<sent>\d+)\s+(?P<c2>\d+)\s+(?P<c3>\d+)\s+(?P<c4>\d+)\s+(?P<c5>\d+)\s+"
    r"(?P<none>\d+)\s+(?P<stored>\d+)\s+(?P<changed>\d+)\s+[\d.]+$",
    re.MULTILINE,
)
ROUTES = {
    "wechat-verify",
    "wechat-push",
    "wechat-push-aes",
    "wechat-plain-mode",
    "telegram",
    "subscribe",
    "confirm-get",
    "confirm-post",
    "unsubscribe-get",
    "unsubscribe-post",
    "preferences-get",
    "preferences-post",
    "redirect",
    "search",
    "issues",
    "git-hook",
    "issue-page",
    "feed",
    "healthz",
    "readyz",
    "api",
    "console-sign-in",
    "console",
}


def test_every_public_route_survives_a_fuzzing_sample() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--per-route", str(PER_ROUTE), "--schemathesis-examples", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )
    output = done.stdout
    rows = {match["route"]: match for match in ROW.finditer(output)}
    assert set(rows) == ROUTES, output + done.stderr
    for route, row in rows.items():
        assert int(row["sent"]) == PER_ROUTE, f"{route} sent {row['sent']}:\n{output}"
        answered = sum(int(row[name]) for name in ("c2", "c3", "c4", "c5", "none"))
        assert answered == PER_ROUTE, f"{route}: the status classes do not add up:\n{output}"
        assert int(row["c5"]) == 0, f"{route} answered 5xx:\n{output}"
        assert int(row["stored"]) == 0, f"{route} stored rows on a refusal:\n{output}"
        assert int(row["changed"]) == 0, f"{route} changed rows on a refusal:\n{output}"
    assert "requests that must be refused were accepted" not in output, output
    assert "schemathesis on /api/openapi.json: passed" in output, output
    assert "server alive: yes" in output, output
    assert done.returncode == 0, output + done.stderr
