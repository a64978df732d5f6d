#!/usr/bin/env bash
# The main job on the embedded default: the jianbao service on http://127.0.0.1:8080 with a SQLite
# database under ./var, which gets the bundled demo issues on first start. Ctrl-C stops it.
source "$(dirname "$0")/venv.sh"
cat >&2 <<'TRY'
Try it (in another terminal):
  open http://127.0.0.1:8080/issues                      the archive every channel links to
  curl 'http://127.0.0.1:8080/search?q=量化'              keyword search, as the bots answer it
  .venv/bin/jianbao search 剪枝                           the same from the command line
  .venv/bin/jianbao render latest --channel telegram      what a channel would receive
WeChat, Telegram and email switch on with their settings: see deploy/jianbao.env.sample.
TRY
exec jianbao serve "$@"
