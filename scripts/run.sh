#!/usr/bin/env bash
# The main job on the embedded default: a SQLite database under ./var, the bundled demo issues
# imported, the issue list printed and the newest issue shown.
source "$(dirname "$0")/venv.sh"
jianbao import --demo
jianbao list
jianbao show latest
echo
echo "Try: .venv/bin/jianbao show 2020-07-02 --json   |   .venv/bin/jianbao import path/to/issues/" >&2
