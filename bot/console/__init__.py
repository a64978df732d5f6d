"""The editors' console at /console: server-rendered pages (Jinja2), usable without JavaScript.

auth.py       signing in and out: editor accounts, session cookies, login limits, `require_editor`
passwords.py  editors' password hashes (argon2id)
pages.py      the home page and the audit trail
issues.py     bringing in an issue (upload, paste), previews on every channel, test sends
previews.py   what the preview page draws of each channel's rendered payload
broadcasts.py starting a broadcast, watching its progress, pausing, resuming, cancelling
"""

from __future__ import annotations

from aiohttp import web

from bot.console import auth, broadcasts, issues, pages


def setup(app: web.Application) -> None:
    auth.setup(app)
    pages.setup(app)
    issues.setup(app)
    broadcasts.setup(app)
