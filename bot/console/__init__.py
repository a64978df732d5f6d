"""The editors' console at /console: server-rendered pages (Jinja2), usable without JavaScript.

auth.py       signing in and out: editor accounts, session cookies, login limits, `require_editor`
passwords.py  editors' password hashes (argon2id)
pages.py      the pages behind the sign-in
"""

from __future__ import annotations

from aiohttp import web

from bot.console import auth, pages


def setup(app: web.Application) -> None:
    auth.setup(app)
    pages.setup(app)
