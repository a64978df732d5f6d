"""The editors' console at /console: server-rendered pages (Jinja2), usable without JavaScript.

auth.py       signing in and out: editor accounts, session cookies, login limits, `require_editor`
passwords.py  editors' password hashes (argon2id)
pages.py      the home page and the audit trail
issues.py     bringing in an issue (upload, paste), previews on every channel, test sends
previews.py   what the preview page draws of each channel's rendered payload
broadcasts.py starting a broadcast, watching its progress, pausing, resuming, cancelling
reports.py    after the send: a broadcast's figures per channel and link, fixing a link, issues compared
subscribers.py the subscriber desk: search, one subscriber's history, status, topics, erasure
subscriber_files.py the desk's CSV import (after a preview) and export, and subscribers' growth by day
"""

from __future__ import annotations

from aiohttp import web

from bot.console import auth, broadcasts, issues, pages, reports, subscriber_files, subscribers


def setup(app: web.Application) -> None:
    auth.setup(app)
    pages.setup(app)
    issues.setup(app)
    reports.setup(app)  # before broadcasts: its POST .../links must not be taken for a {verb}
    broadcasts.setup(app)
    subscriber_files.setup(app)  # before subscribers: .../import and .../export.csv are no {id}
    subscribers.setup(app)
