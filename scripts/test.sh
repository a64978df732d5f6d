#!/usr/bin/env bash
# The whole test suite: lint, format check, strict typing, then pytest on SQLite and PostgreSQL.
source "$(dirname "$0")/venv.sh"
source "$(dirname "$0")/services.sh"
set -x
ruff check .
ruff format --check .
mypy
pytest "$@"
