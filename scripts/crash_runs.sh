#!/usr/bin/env bash
# The broadcast crash test N times in a row (default 10), each with its own kill moments (seed), printing
# each run's figures and time: `bash scripts/crash_runs.sh [N]`. Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
started=$SECONDS
for run in $(seq 1 "$runs"); do
  seed=$((20200700 + run))
  began=$SECONDS
  JIANBAO_TEST_CRASH_SEED=$seed .venv/bin/pytest -q -s -p no:cacheprovider \
    "tests/bot/broadcast/test_crash.py::test_workers_killed_five_times_lose_nobody_and_repeat_only_what_was_in_flight" \
    | grep -E "^crash run|passed|failed|Error" || { echo "run $run (seed $seed) failed"; exit 1; }
  echo "run $run of $runs (seed $seed): passed in $((SECONDS - began)) s"
done
echo "$runs runs in a row passed in $((SECONDS - started)) s"
