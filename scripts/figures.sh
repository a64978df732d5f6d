#!/usr/bin/env bash
# Every benchmark and load script in its quick form (a few minutes), each figure beside its floor:
# `bash scripts/figures.sh [--full] [--only NAME ...]`. See scripts/figures.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/services.sh
exec .venv/bin/python scripts/figures.py "$@"
