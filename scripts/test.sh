#!/usr/bin/env bash
# The whole test suite: lint, format check, strict typing, then pytest on SQLite and PostgreSQL.
source "$(dirname "$0")/venv.sh"
source "$(dirname "$0")/services.sh"
# The email screenshot test and tests/browser (Playwright) need Debian's headless Chromium (and a CJK
# font, or Chinese text renders as boxes). Without them those tests fail, they do not skip.
if [ "$(id -u)" = 0 ] && { [ ! -x /usr/bin/chromium ] || [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; }; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
fi
set -x
ruff check .
ruff format --check .
mypy
# One worker per core (JIANBAO_TEST_WORKERS to change it, 0 for one process); a test module stays on one
# worker, so its module fixtures are built once. Every test has its own database, schema and ports.
pytest -n "${JIANBAO_TEST_WORKERS:-auto}" --dist loadfile "$@"
