"""Property-based fuzzing of every public route of the running service, and schemathesis on the admin API.

    .venv/bin/python scripts/fuzz_routes.py [--per-route 10000] [--routes NAME ...] [--seed 0]
                                            [--postgres [URL]] [--schemathesis-examples 100] [--keep]

Starts the fakes (Telegram Bot API, WeChat API, SMTP: `python -m tests.fakes.serve`) and `jianbao serve`
in processes of their own, on loopback, with a fresh database (SQLite in a temporary folder; PostgreSQL
with --postgres) holding the demo issues, a few subscribers of every channel and tracking links. Every
channel is on: WeChat in safe mode (its plain pushes are accepted as well), then once more in plain mode
for `wechat-plain-mode`; Telegram against the fake Bot API; email sign-up against the fake SMTP server;
the admin API with a 64-character token; the Git push webhook on a clone of a local repository whose
commits add an issue and then break it; the group robots (WeCom, Feishu) against their fakes, run in
this process. Sign-ups carry the CSRF cookie and field an issue page hands out (most of them; the others
test the refusal), and the sign-up caps are set high so that sign-ups reach the form's parsing and storage
rather than stop at the cap. The broadcast worker is off: rows change only through requests.

The editors' console (/console) has editor accounts made with `jianbao editors add` before the service
starts. `console-sign-in` signs in as one editor only ever with its right password (so that a sign-in can
succeed all along) and as another only ever with wrong ones (so that its name reaches the login limit,
429), and with hostile names and passwords from a pool of client addresses (so that most tries reach
the password check rather than the per-address limit); it also signs out, ending a spare session of its
own, never the one `console` uses. `console` fuzzes every page and action of the
console with the session cookie of a real sign-in made before the fuzzing, and with the CSRF pair the
sign-in page hands out; a valid broadcast form starts a real broadcast (the worker being off, it sends
nothing). It also fuzzes the figures after a send (stats pages and CSVs, link fixes with the seeded
broadcast's real tracked URLs and hostile ones, issues compared) and the subscriber desk (search, a
subscriber's page, status and topic changes, erasure: mostly without its confirm box, which must be
refused, rarely a real one of a subscriber seeded for it; CSV imports, whose confirm step with a tampered
HMAC or payload must be refused; exports, growth). Requests of either that must be refused whatever else
they hold (no session or a wrong one, a wrong CSRF pair on a POST, a wrong password, an erasure without
its box ticked, a tampered import confirmation) are judged as refusals even when they are answered 303,
and such a request that is accepted (2xx, or 3xx to a POST) is a failure of its own.

For each route, hypothesis generates --per-route requests: well-formed ones (valid signatures over
mutated bodies, valid XML and real Telegram update shapes with hostile values, signed tokens with one
character changed, real issue dates) mixed with garbage (random bytes, huge numbers, deep nesting, wrong
methods and content types, invalid UTF-8, header injection, absurd query strings, malformed HTTP sent
over a raw socket). Requests go one at a time, so that each is judged alone:

- a 5xx is a failure; the server's stderr from that request (its traceback) is kept with it;
- "none" counts requests without an HTTP answer the client could read (the connection closed after a
  malformed request, or a 400 with a body answering HEAD); after one, the server must still be alive;
- after a refused request (4xx, 5xx or no answer) the database must not have changed: the row count of
  every table ("rows stored by refused requests"), and the content of every table ("rows changed by
  refused requests"; the issue tables by a fingerprint, see FINGERPRINT_COLUMNS; SQLite's data_version
  says when anything was committed, so unchanged databases cost one PRAGMA; the click tables, click,
  click_hour and broadcast_tally among them). Accepted requests may store and change: a sign-up stores a
  pending row, a console page view an audit entry, a link fix a link's URL, the desk a subscriber's status
  or topics, an erasure or an import the subscribers. A click on /r/{token} is written up to a second
  after its 302 (bot/click_buffer.py): the judge waits for it (SETTLE_SECONDS) before the next request;
- the server must still answer /healthz after every route, and at the end.

Then schemathesis (its CLI) runs against /api/openapi.json with the admin token: every operation,
--schemathesis-examples cases each, all checks, through a relay that gives each of its connections a
client address of its own (see run_schemathesis). Its figures: the responses it got, by status.

Prints, per route: requests sent, responses by status class, the 5xx count and the rows stored and
changed by refused requests; then schemathesis' result and "server alive: yes/no". Exits 1 on any 5xx,
a dead server, a row stored or changed by a refused request, a request that must be refused accepted,
or a schemathesis failure; the folder with the server's stderr (server-*.log) and every 5xx
(failures.txt) is then kept and named.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import http.client
import io
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from yarl import URL

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.tokens import Purpose, ReaderIds, SubscriberTokens  # noqa: E402
from content.demo import demo_issue_dir  # noqa: E402
from content.source import MAX_ISSUE_BYTES  # noqa: E402
from storage.broadcasts import BroadcastStore  # noqa: E402
from storage.clicks import ClickEvent, ClickStore  # noqa: E402
from storage.database import Database  # noqa: E402
from storage.issues import IssueStore  # noqa: E402
from storage.links import LinkStore  # noqa: E402
from storage.subscribers import MAX_TOPIC_LENGTH, MAX_TOPICS, SubscriberStatus, SubscriberStore  # noqa: E402
from tests.bot.helpers import minimal_issue  # noqa: E402
from tests.bot.wechat_helpers import encrypt  # noqa: E402
from tests.fakes.feishu_api import running_fake_feishu  # noqa: E402
from tests.fakes.telegram_api import TOKEN as TELEGRAM_TOKEN  # noqa: E402
from tests.fakes.wechat_api import APPID, SECRET  # noqa: E402
from tests.fakes.wecom_api import running_fake_wecom  # noqa: E402

BIN = ROOT / ".venv" / "bin"
PYTHON = BIN / "python"
DEFAULT_POSTGRES = os.environ.get("JIANBAO_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"

WECHAT_TOKEN = "fuzz-wechat-token"
AES_KEY = "ZnV6ei1yb3V0ZXMtYWVzLWtleS0zMi1ieXRlcy0hISE"  # 43 characters: base64 of 32 bytes
TELEGRAM_SECRET = "fuzz-telegram-secret-0123456789"
ADMIN_TOKEN = "fuzz-admin-token-" + "0123456789abcdef" * 3  # 65 characters; the service wants >= 32
SECRET_KEY = "fuzz-secret-key-0123456789abcdef0123456789abcdef"
PUBLIC_URL = "https://jianbao.example"
GIT_SECRET = "fuzz-git-webhook-secret-0123456789"
ACCOUNT = "gh_0123456789ab"
# The console's editors (`jianbao editors add`): EDITOR signs in once, before the fuzzing, for the
# `console` route's session (and once more for a spare session that sign-outs may end); SIGN_IN_EDITOR is
# only ever sent its right password and GUARDED_EDITOR only wrong ones, so that under the per-name login
# limit one name can always sign in and the other is soon refused with 429.
EDITOR = "fuzz-editor"
SIGN_IN_EDITOR = "fuzz-sign-in"
GUARDED_EDITOR = "fuzz-guarded"
EDITOR_PASSWORD = "fuzz-editor-password-0123456789"
SESSION_COOKIE = "jianbao_console"  # bot/console/auth.py COOKIE
# Robots the WeCom and Feishu fakes know (a test send to any other key is refused by the platform).
ROBOT_KEYS = ("fuzz-robot-0123456789", "fuzz-robot-abcdefghij")

# Per request: WeChat answers within its 4 s deadline, everything else in milliseconds. A request that
# takes longer than this is "no answer", and the server is then asked whether it is still alive.
REQUEST_TIMEOUT_SECONDS = 30.0
HEALTH_TIMEOUT_SECONDS = 10.0
# Malformed HTTP is answered (400) or dropped at once; waiting longer only finds a parser waiting for more.
RAW_TIMEOUT_SECONDS = 5.0
SERVER_START_SECONDS = 60.0
# A click on /r/{token} is written within a second (bot/click_buffer.py FLUSH_SECONDS); this is how long
# the judge waits for it at most.
SETTLE_SECONDS = 3.0
# Each route stops at this many seconds even before --per-route requests (the run must end by itself).
DEFAULT_ROUTE_SECONDS = 1200.0
SCHEMATHESIS_SECONDS = 600.0
# The service's own limits the generators aim around: 1 MiB bodies (bot/app.py), 64 KiB WeChat XML
# (bot/wechat/protocol.py), aiohttp's 8190-byte request line and header fields.
MAX_BODY = 1024 * 1024
MAX_XML = 64 * 1024
MAX_LINE = 8190
# Admin-token guesses come from rotating loopback addresses (the service throttles per address after
# 10 failures a minute): some addresses stay under the limit, so the token check itself is fuzzed too.
INTRUDER_ADDRESSES = 48
# Console sign-ins come from this many addresses (5 wrong passwords per address and 15 minutes, then 429):
# at 10,000 requests each address gets about ten tries, so both the password check and the limit are
# reached. They close their connection after each request, so the pool holds no sockets open.
SIGN_IN_ADDRESSES = 1000
# Tables compared by these columns only: the issues (written by imports through the console and the Git
# hook) are large, and a change to an issue changes its content_hash and updated_at, a replaced section or
# item its id. Every other table is compared whole.
FINGERPRINT_COLUMNS = {
    "issue": ("id", "date", "content_hash", "source_path", "imported_at", "updated_at"),
    "section": ("id", "issue_id", "position"),
    "item": ("id", "issue_id", "section_id", "position"),
}
# Columns written in the background, up to a second after the request that caused them (a WeChat reader's
# last message time, batched by bot/last_seen.py): a change there belongs to an earlier accepted request,
# not to the one just judged, so they are left out of the comparison.
DEFERRED_COLUMNS = {"subscriber": {"last_seen_at"}}


# --- requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a recipe needs to build its request at send time: secrets, seeded data, the clock."""

    host: str
    now: float
    dates: tuple[str, ...]
    confirm_tokens: tuple[str, ...]
    unsubscribe_tokens: tuple[str, ...]
    stale_tokens: tuple[str, ...]  # expired confirm tokens, tokens of the wrong purpose, from the future
    link_tokens: tuple[str, ...]
    openids: tuple[str, ...]
    chat_ids: tuple[int, ...]
    csrf: tuple[str, str, str] = ("", "", "")  # the sign-up form's cookie name and value, and its field
    commits: tuple[str, ...] = ()  # of the Git repository behind /hooks/git, oldest first
    console_csrf: tuple[str, str, str] = ("", "", "")  # the pair GET /console/sign-in hands out
    preferences_tokens: tuple[str, ...] = ()  # the links of the email readers' preference pages
    console_session: str = ""  # EDITOR's session cookie, from a real sign-in; never ended by a request
    spare_session: str = ""  # another of EDITOR's sessions, for sign-outs to end
    fix_urls: tuple[str, ...] = ()  # the tracked URLs of the seeded broadcast's issue (POST .../links)
    subscriber_ids: tuple[int, ...] = ()  # every seeded subscriber's id
    desk_ids: tuple[int, ...] = ()  # subscribers only the desk's actions use (a real erase takes one)
    reader_ids: tuple[str, ...] = ()  # valid `s` of /r/{token}: signed ids of seeded subscribers
    stale_reader_ids: tuple[str, ...] = ()  # signed right, for ids no subscriber has


@dataclass
class Request:
    method: str
    target: str  # path and query, percent-encoded ASCII (or anything, for `raw`)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    raw: bytes | None = None  # the whole request, sent as it is over a socket of its own
    source: str = "127.0.0.1"  # the client address the request comes from
    # Refused whatever else it holds (no session, a wrong CSRF pair, a wrong password): judged as a
    # refusal even when answered 303, and a failure when accepted (2xx, or 3xx to anything but GET/HEAD).
    must_refuse: bool = False
    # Answered at once but written later (a click on /r/{token}, recorded in batches each second): when
    # accepted, the judge waits for that write before the next request, so that it is not blamed on one.
    settle: bool = False

    def summary(self, limit: int = 300) -> str:
        if self.raw is not None:
            return f"raw {self.raw[:limit]!r}" + (
                f" … ({len(self.raw)} bytes)" if len(self.raw) > limit else ""
            )
        headers = "; ".join(f"{name}: {value[:80]}" for name, value in self.headers)
        body = "" if self.body is None else f" body {self.body[:limit]!r}"
        if self.body is not None and len(self.body) > limit:
            body += f" … ({len(self.body)} bytes)"
        return f"{self.method} {self.target[:limit]} [{headers[:limit]}]{body}"


Recipe = Callable[[Context], Request]
NONCES = itertools.count(1)
T = TypeVar("T")


def raw_request(
    ctx: Context,
    method: str | bytes,
    target: str | bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    length: bool = True,
) -> bytes:
    """An HTTP/1.1 request as bytes, for what an HTTP client library refuses to send."""

    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")

    lines = [raw(method) + b" " + raw(target) + b" HTTP/1.1", b"Host: " + ctx.host.encode()]
    lines += [name + b": " + value for name, value in headers or []]
    if length and body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def query_string(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs, quote_via=quote, encoding="utf-8", errors="surrogateescape")


def with_query(path: str, pairs: list[tuple[str, str]]) -> str:
    return f"{path}?{query_string(pairs)}" if pairs else path


# --- values -------------------------------------------------------------------------------------------

HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "\r\n",
    "\r\nSet-Cookie: injected=1",
    "]]>",
    "<![CDATA[",
    "</xml>",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "../../../../etc/passwd",
    "%00",
    "%ff",
    "\u202e\u200b\ufeff",
    "\U0001d54f" * 50,
    "量化" * 100,
    "NaN",
    "-0",
    "1e309",
    "9" * 5000,
    "-" + "9" * 40,
    "true",
    "null",
    "[]",
    "{}",
    "\\u0000",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape"),
]

COMMAND_WORDS = [
    "订阅",
    "退订",
    "最新",
    "更多",
    "帮助",
    "subscribe",
    "unsubscribe",
    "td",
    "more",
    "?",
    "量化",
    "NPU",
]


def hostile_text(max_size: int = 200) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=max_size),
        st.text(st.characters(codec="utf-8"), max_size=max_size),
        st.sampled_from(COMMAND_WORDS),
    )


def usually(common: st.SearchStrategy[T], rare: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`common` three times in four, `rare` otherwise. (st.one_of(common, common, common, rare) would not
    do: one_of drops repeated strategies.)"""
    return st.sampled_from([common, common, common, rare]).flatmap(lambda chosen: chosen)


@st.composite
def big_text(draw: st.DrawFn, max_size: int) -> str:
    """A long string, built from a drawn unit rather than drawn character by character."""
    unit = draw(
        st.one_of(
            st.sampled_from(["a", "量", "\U0001f600", "]]>", "<a>", "\x00", "%"]),
            st.text(min_size=1, max_size=8),
        )
    )
    size = draw(st.integers(0, max_size))
    return (unit * (size // max(1, len(unit.encode())) + 1))[: max(size, 0)]


@st.composite
def random_bytes(draw: st.DrawFn, max_size: int) -> bytes:
    size = draw(st.one_of(st.integers(0, 64), st.integers(0, max_size)))
    return draw(st.randoms(use_true_random=False)).randbytes(size)


def huge_numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers().map(str),
        st.integers(0, 10_000).map(lambda digits: "9" * digits),
        st.sampled_from(
            ["-1", "0", "00", "1.5", "1e3", "0x10", " 1", "١٢", "１２", "+1", "1_000", "NaN", ""]
        ),
    )


# --- transport-level garbage, for every route ---------------------------------------------------------

WRONG_METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "FOO", "HEAD", "GET", "POST"]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=does-not-exist",
    "application/x-www-form-urlencoded; charset=utf-16",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=xyz",
    "application/json",
    "application/json; charset=latin-1",
    "text/xml",
    "text/plain; charset=gbk",
    "application/octet-stream",
    "*/*",
    ";;;",
    "量化/量化",
]
ODD_HEADERS = [
    ("Accept-Encoding", "gzip, deflate, br, zstd, *;q=0"),
    ("Accept-Language", "zh-CN;q=" + "9" * 100),
    ("Range", "bytes=0-0,-1,99999999999999999999-"),
    ("If-None-Match", "*"),
    ("If-Modified-Since", "Mon, 32 Foo 99999 25:61:61 GMT"),
    ("Cookie", "a=" + "b" * 4000),
    ("X-Forwarded-For", "1.2.3.4, ::1, evil"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "gopher"),
    ("Forwarded", "for=evil;host=evil.example;proto=https"),
    ("Origin", "null"),
    ("Transfer-Encoding", "identity"),
    ("Expect", "100-continue"),
    ("Content-Encoding", "gzip"),
    ("Authorization", "Bearer " + "x" * 100),
    ("X-Telegram-Bot-Api-Secret-Token", "量化"),
]


@st.composite
def raw_garbage(draw: st.DrawFn, path: str) -> Recipe:
    """Malformed HTTP at the parser's level, aimed at `path`: what only a raw socket can send."""
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "request-line",
                "invalid-utf8-target",
                "header-injection",
                "obs-fold",
                "header-bytes",
                "two-lengths",
                "bad-length",
                "bad-chunked",
                "smuggle",
                "long-line",
                "many-headers",
                "http10",
            ]
        )
    )
    junk = draw(random_bytes(4096))
    text = draw(hostile_text(60))

    def build(ctx: Context) -> Request:
        encoded = text.encode("utf-8", "surrogateescape")
        if kind == "bytes":
            # Ended as a request head ends, so that the parser decides now rather than wait for more.
            raw = (junk or b"\x00") + b"\r\n\r\n"
        elif kind == "request-line":
            raw = draw_line(junk, ctx)
        elif kind == "invalid-utf8-target":
            raw = raw_request(ctx, "GET", path.encode() + b"/\xff\xfe\xc0\xaf?q=\xed\xa0\x80" + encoded)
        elif kind == "header-injection":
            raw = raw_request(ctx, "GET", path, [(b"X-Test", b"a\rInjected: 1"), (b"X-Other", b"b\nEvil: 2")])
        elif kind == "obs-fold":
            raw = raw_request(ctx, "GET", path, [(b"X-Folded", b"first\r\n  continued " + encoded)])
        elif kind == "header-bytes":
            raw = raw_request(
                ctx, "GET", path, [(b"Authorization", b"Bearer \xff\xfe" + encoded), (b"X-\xff", b"\x80")]
            )
        elif kind == "two-lengths":
            raw = raw_request(
                ctx,
                "POST",
                path,
                [(b"Content-Length", b"3"), (b"Content-Length", b"5")],
                b"abcde",
                length=False,
            )
        elif kind == "bad-length":
            raw = raw_request(
                ctx,
                "POST",
                path,
                [(b"Content-Length", b"-1" if junk[:1] < b"\x80" else b"1e3")],
                b"x",
                length=False,
            )
        elif kind == "bad-chunked":
            raw = raw_request(
                ctx,
                "POST",
                path,
                [(b"Transfer-Encoding", b"chunked")],
                b"zz\r\n" + junk[:50] + b"\r\n0\r\n\r\n",
                length=False,
            )
        elif kind == "smuggle":
            body = b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            raw = raw_request(
                ctx,
                "POST",
                path,
                [(b"Content-Length", str(len(body)).encode()), (b"Transfer-Encoding", b"chunked")],
                body,
                length=False,
            )
        elif kind == "long-line":
            raw = raw_request(ctx, "GET", path + "?" + "a" * (MAX_LINE + len(junk)))
        elif kind == "many-headers":
            raw = raw_request(
                ctx, "GET", path, [(f"X-H{i}".encode(), b"v") for i in range(200 + len(junk) // 8)]
            )
        else:
            raw = b"GET " + path.encode() + b" HTTP/1.0\r\n\r\n"
        return Request("RAW", path, raw=raw)

    return build


def draw_line(junk: bytes, ctx: Context) -> bytes:
    """A request line broken in one of the ways parsers trip on."""
    variants = [
        b"GET\r\n\r\n",
        b" / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / FOO/1.1\r\nHost: x\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET /" + junk[:100].replace(b"\r", b"").replace(b"\n", b"") + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        b"CONNECT " + ctx.host.encode() + b" HTTP/1.1\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    return variants[len(junk) % len(variants)]


@st.composite
def transport_garbage(draw: st.DrawFn, path: str, methods: list[str]) -> Recipe:
    """Requests to `path` with the wrong method, content type, headers, query or body, through aiohttp."""
    method = draw(st.sampled_from(WRONG_METHODS + methods))
    pairs = draw(st.lists(st.tuples(hostile_text(40), hostile_text(40)), max_size=8))
    headers = draw(st.lists(st.sampled_from(ODD_HEADERS), max_size=4))
    content_type = draw(st.one_of(st.none(), st.sampled_from(CONTENT_TYPES)))
    body = draw(st.one_of(st.none(), random_bytes(MAX_BODY + 4096)))
    absurd = draw(st.sampled_from(["", "many", "repeat", "empty-keys", "long"]))

    def build(ctx: Context) -> Request:
        target = with_query(path, pairs)
        if absurd == "many":
            target = path + "?" + "&".join(f"k{i}=v" for i in range(1500))
        elif absurd == "repeat":
            target = path + "?" + "&".join(["q=1"] * 1000)
        elif absurd == "empty-keys":
            target = path + "?&&&=&==&%&%%&%zz&;;"
        elif absurd == "long":
            target = path + "?q=" + "%E9%87%8F" * 2000
        all_headers = list(headers)
        if content_type is not None:
            all_headers.append(("Content-Type", content_type))
        return Request(method, target, all_headers, body)

    return build


def garbage_for(path: str, methods: list[str]) -> st.SearchStrategy[Recipe]:
    return st.one_of(transport_garbage(path, methods), raw_garbage(path))


def intruder_address(number: int) -> str:
    """One of the loopback addresses wrong admin tokens come from; the editor's is 127.0.0.1."""
    number %= INTRUDER_ADDRESSES
    return f"127.1.{number // 250}.{number % 250 + 1}"


@st.composite
def from_intruders(draw: st.DrawFn, recipes: st.SearchStrategy[Recipe]) -> Recipe:
    """`recipes` sent from the intruders' addresses: they carry no admin token, and the editor's own
    address must not be throttled for their failures."""
    recipe = draw(recipes)
    number = draw(st.integers(0, INTRUDER_ADDRESSES - 1))
    return lambda ctx: dataclasses.replace(recipe(ctx), source=intruder_address(number))


# --- WeChat ---------------------------------------------------------------------------------------------


def cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def wechat_signature(*parts: str) -> str:
    """WeChat's sha1 over the sorted parts (tests/bot/wechat_helpers.py `sign`), for any string."""
    joined = "".join(sorted(parts)).encode("utf-8", "surrogateescape")
    return hashlib.sha1(joined).hexdigest()  # WeChat's algorithm, not our choice


@st.composite
def create_time(draw: st.DrawFn) -> Callable[[float], str]:
    how = draw(usually(st.just("now"), st.sampled_from(["offset", "huge", "odd"])))
    offset = draw(st.integers(-(10**12), 10**12))
    odd = draw(huge_numbers())
    if how == "now":
        return lambda now: str(int(now))
    if how == "offset":
        return lambda now: str(int(now) + offset)
    if how == "huge":
        digits = draw(st.integers(20, 10_000))
        return lambda now: "9" * digits
    return lambda now: odd


@st.composite
def wechat_message(draw: st.DrawFn) -> Callable[[Context], str]:
    """A WeChat push's XML with hostile values in well-formed places (or fields missing, doubled, nested)."""
    # Each field is usually what WeChat sends and sometimes hostile, so that most messages get past the
    # parser to the dialog while every field still gets its share of hostile values.
    kinds = st.sampled_from(["image", "voice", "location", "link", "EVENT", ""]) | hostile_text(20)
    kind = draw(usually(st.sampled_from(["text", "event"]), kinds))
    openid = draw(usually(st.none(), hostile_text(80) | st.from_regex(r"[A-Za-z0-9_-]{28}", fullmatch=True)))
    content = draw(usually(st.sampled_from(COMMAND_WORDS), hostile_text(300) | big_text(MAX_XML)))
    events = st.sampled_from(["SUBSCRIBE", "CLICK", "SCAN", "VIEW", "LOCATION", ""]) | hostile_text(30)
    event = draw(usually(st.sampled_from(["subscribe", "unsubscribe"]), events))
    msg_id = draw(usually(st.integers(0, 2**63).map(str), huge_numbers() | st.none()))
    created = draw(create_time())
    fields = ["ToUserName", "FromUserName", "CreateTime", "MsgType", "MsgId"]
    drop = draw(usually(st.just(frozenset()), st.sets(st.sampled_from(fields), max_size=2)))
    extra = draw(
        st.lists(
            st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,15}", fullmatch=True), hostile_text(50)),
            max_size=3,
        )
    )
    escaping = draw(usually(st.just("cdata"), st.sampled_from(["escaped", "nested", "duplicate"])))

    def build(ctx: Context) -> str:
        sender = openid if openid is not None else ctx.openids[len(content) % len(ctx.openids)]
        fields = {
            "ToUserName": ACCOUNT,
            "FromUserName": sender,
            "CreateTime": created(ctx.now),
            "MsgType": kind,
            "Content": content,
            "Event": event,
            "EventKey": "",
            "MsgId": msg_id,
        }
        parts = []
        for name, value in [*fields.items(), *extra]:
            if name in drop or value is None:
                continue
            if escaping == "cdata":
                parts.append(f"<{name}>{cdata(value)}</{name}>")
            elif escaping == "escaped":
                safe = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                parts.append(f"<{name}>{safe}</{name}>")
            elif escaping == "nested":
                parts.append(f"<{name}><inner>{cdata(value)}</inner></{name}>")
            else:
                parts.append(f"<{name}>{cdata(value)}</{name}><{name}>{cdata(value[::-1])}</{name}>")
        return "<xml>" + "".join(parts) + "</xml>"

    return build


@st.composite
def xml_garbage(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(
            ["dtd", "entity", "external", "deep", "root", "encoding", "bytes", "empty", "big", "bom", "pi"]
        )
    )
    depth = draw(st.integers(1, 20_000))
    junk = draw(random_bytes(MAX_XML + 1024))
    if kind == "dtd":
        return b'<?xml version="1.0"?><!DOCTYPE xml [<!ELEMENT xml ANY>]><xml><a>1</a></xml>'
    if kind == "entity":
        laughs = "".join(f'<!ENTITY l{i} "&l{i - 1};&l{i - 1};&l{i - 1};">' for i in range(1, 10))
        document = f'<!DOCTYPE xml [<!ENTITY l0 "lol">{laughs}]><xml><Content>&l9;</Content></xml>'
        return b'<?xml version="1.0"?>' + document.encode()
    if kind == "external":
        return b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Content>&x;</Content></xml>'
    if kind == "deep":
        depth = min(depth, (MAX_XML - 20) // 7)
        return b"<xml>" + b"<a>" * depth + b"</a>" * depth + b"</xml>"
    if kind == "root":
        return b"<notxml><ToUserName>a</ToUserName></notxml>"
    if kind == "encoding":
        return '<?xml version="1.0" encoding="GBK"?><xml><Content>量化</Content></xml>'.encode("gbk")
    if kind == "empty":
        return b""
    if kind == "big":
        return b"<xml><Content>" + b"a" * (MAX_XML + len(junk)) + b"</Content></xml>"
    if kind == "bom":
        return b"\xef\xbb\xbf<xml><ToUserName>a</ToUserName></xml>" + junk[:10]
    if kind == "pi":
        return b"<?xml-stylesheet href='http://evil.example/x.xsl'?><xml><MsgType>text</MsgType></xml>"
    return junk


@st.composite
def signature_query(draw: st.DrawFn) -> Callable[[Context, str], list[tuple[str, str]]]:
    """The query of a push or verification: signed right (fresh or stale), or wrong in one way."""
    odd_ways = ["stale", "future", "wrong", "missing", "odd-timestamp", "extra", "upper"]
    how = draw(st.sampled_from(["valid"] * 12 + odd_ways))
    # A valid request has a nonce of digits, as WeChat's are; the others may have anything.
    digits = st.integers(0, 10**6).map(str)
    nonce = draw(digits if how == "valid" else st.one_of(digits, hostile_text(40)))
    fresh_nonce = how == "valid" or draw(st.booleans())
    skew = draw(st.integers(301, 10**9))
    odd = draw(huge_numbers())
    missing = draw(st.sampled_from(["signature", "timestamp", "nonce"]))
    garbage = draw(hostile_text(60))

    def build(ctx: Context, token: str) -> list[tuple[str, str]]:
        # A fresh nonce per request, as WeChat sends: a nonce used twice is refused as a replay.
        nonce_ = f"{nonce}{next(NONCES)}" if fresh_nonce and nonce.isdigit() else nonce
        stamp = str(int(ctx.now))
        if how == "stale":
            stamp = str(int(ctx.now) - skew)
        elif how == "future":
            stamp = str(int(ctx.now) + skew)
        elif how == "odd-timestamp":
            stamp = odd
        signature = wechat_signature(token, stamp, nonce_)
        if how == "wrong":
            signature = garbage
        elif how == "upper":
            signature = signature.upper()
        pairs = [("signature", signature), ("timestamp", stamp), ("nonce", nonce_)]
        if how == "missing":
            pairs = [pair for pair in pairs if pair[0] != missing]
        if how == "extra":
            pairs += [("signature", garbage), ("timestamp", "0")]
        return pairs

    return build


@st.composite
def wechat_verify(draw: st.DrawFn) -> Recipe:
    query = draw(signature_query())
    echostr = draw(st.one_of(st.integers(0, 10**20).map(str), hostile_text(200), big_text(6000)))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        return Request(method, with_query("/wechat", [*query(ctx, WECHAT_TOKEN), ("echostr", echostr)]))

    return build


@st.composite
def wechat_push(draw: st.DrawFn) -> Recipe:
    """A plain push (no encrypt_type): valid XML with hostile values, or garbage, signed or not."""
    query = draw(signature_query())
    message = draw(st.one_of(wechat_message(), wechat_message(), wechat_message(), st.none()))
    garbage = draw(xml_garbage())
    encrypt_type = draw(st.sampled_from([None, None, None, "raw", "RAW", "aes", "AES", "des", ""]))
    content_type = draw(
        st.sampled_from(["text/xml", "application/xml", None, "application/json", "text/xml; charset=gbk"])
    )

    def build(ctx: Context) -> Request:
        pairs = query(ctx, WECHAT_TOKEN)
        if encrypt_type is not None:
            pairs.append(("encrypt_type", encrypt_type))
        body = message(ctx).encode("utf-8", "surrogateescape") if message is not None else garbage
        headers = [("Content-Type", content_type)] if content_type else []
        return Request("POST", with_query("/wechat", pairs), headers, body)

    return build


@st.composite
def wechat_push_aes(draw: st.DrawFn) -> Recipe:
    """A safe-mode push: the message encrypted for our AppID with our key and signed with msg_signature
    over its Encrypt field, or that envelope broken in one place."""
    query = draw(signature_query())
    garbage = xml_garbage().map(lambda data: lambda ctx: data.decode("utf-8", "replace"))
    message: Callable[[Context], str] = draw(usually(wechat_message(), garbage))
    broken = ["bad-msg-signature", "no-msg-signature", "other-appid", "other-key", "flip", "bad-base64"]
    broken += ["short", "no-encrypt", "bad-length", "padding", "outer-garbage"]
    how = draw(st.sampled_from(["valid"] * 12 + broken))
    flip = draw(st.integers(0, 10_000))
    junk = draw(random_bytes(2000))

    def build(ctx: Context) -> Request:
        pairs = query(ctx, WECHAT_TOKEN)
        stamp = dict(pairs).get("timestamp", "")
        nonce = dict(pairs).get("nonce", "")
        plaintext = message(ctx)
        encrypted = envelope(plaintext, how, flip, junk)
        outer = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>"
        if how == "no-encrypt":
            outer = f"<xml><ToUserName>{cdata(ACCOUNT)}</ToUserName></xml>"
        if how == "outer-garbage":
            outer = junk.decode("latin-1")
        msg_signature = wechat_signature(WECHAT_TOKEN, stamp, nonce, encrypted)
        if how == "bad-msg-signature":
            msg_signature = msg_signature[::-1]
        pairs.append(("encrypt_type", "aes"))
        if how != "no-msg-signature":
            pairs.append(("msg_signature", msg_signature))
        body = outer.encode("utf-8", "surrogateescape") if how != "outer-garbage" else junk
        return Request("POST", with_query("/wechat", pairs), [("Content-Type", "text/xml")], body)

    return build


def envelope(plaintext: str, how: str, flip: int, junk: bytes) -> str:
    """The Encrypt field for `plaintext`, correct or broken as `how` says."""
    try:
        if how == "other-appid":
            return encrypt(plaintext, aes_key=AES_KEY, appid="wx_someone_else")
        if how == "other-key":
            return encrypt(plaintext, aes_key="b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktISE", appid=APPID)
        encrypted = encrypt(plaintext, aes_key=AES_KEY, appid=APPID)
    except UnicodeEncodeError:  # a lone surrogate in the plaintext: send it as bytes instead
        encrypted = base64.b64encode(junk).decode()
    raw = bytearray(base64.b64decode(encrypted))
    if how == "flip" and raw:
        raw[flip % len(raw)] ^= 1 << (flip % 8)
    elif how == "short":
        raw = raw[: flip % 48]
    elif how == "bad-length":
        raw = bytearray(_reencrypt_with_length(plaintext, flip))
    elif how == "padding":
        raw = raw + bytearray(junk[:16].ljust(16, b"\x00"))
    text = base64.b64encode(bytes(raw)).decode()
    if how == "bad-base64":
        text = text[:-3] + "*!~" if len(text) > 3 else "*"
    return text


def _reencrypt_with_length(plaintext: str, length: int) -> bytes:
    """Safe mode's layout with a lying 4-byte length: random(16) | length | message | appid, padded."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = base64.b64decode(AES_KEY + "=")
    body = plaintext.encode("utf-8", "surrogateescape")
    plain = os.urandom(16) + struct.pack(">I", (length * 7919) % 2**32) + body + APPID.encode()
    padding = 32 - len(plain) % 32
    plain += bytes([padding]) * padding
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return encryptor.update(plain) + encryptor.finalize()


# --- Telegram -------------------------------------------------------------------------------------------

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**200), 2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text(100),
)


def json_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    return st.recursive(
        JSON_LEAVES,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(hostile_text(20), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def telegram_update(draw: st.DrawFn) -> Callable[[Context], dict[str, Any]]:
    """An Update as Telegram sends one (message, callback query, inline query, edits, channel posts),
    with hostile values, a field or two replaced by anything JSON can hold."""
    kind = draw(
        st.sampled_from(
            [
                "message",
                "command",
                "callback_query",
                "inline_query",
                "edited_message",
                "channel_post",
                "sticker",
                "unknown",
            ]
        )
    )
    chat_id = draw(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers()))
    text = draw(st.one_of(st.sampled_from(COMMAND_WORDS), hostile_text(300), big_text(5000)))
    command = draw(
        st.sampled_from(
            [
                "/start",
                "/subscribe",
                "/unsubscribe",
                "/latest",
                "/search",
                "/help",
                "/nope",
                "/start@jianbao_test_bot",
            ]
        )
    )
    argument = draw(
        st.one_of(
            st.sampled_from(["", "subscribe", "latest", "q_6YeP5YyW", "q_!!!", "q_" + "A" * 62]),
            hostile_text(80),
        )
    )
    data = draw(
        st.one_of(
            st.sampled_from(["s:5:量化", "k:5:abc", "s:999999:x", "k::", "s:-1:q", ":", ""]), hostile_text(64)
        )
    )
    offset = draw(st.one_of(st.sampled_from(["", "5", "-5", "500", "501", "9" * 30]), hostile_text(20)))
    update_id = draw(st.one_of(st.integers(0, 2**31), st.integers(), st.integers(-(2**70), 2**70)))
    entity = draw(st.tuples(st.integers(-5, 10_000), st.integers(-5, 10_000)))
    replacements = draw(st.lists(st.tuples(st.integers(0, 40), json_values()), max_size=2))
    date = draw(st.one_of(st.just(None), st.integers(), st.integers(-(2**40), 2**40)))

    def build(ctx: Context) -> dict[str, Any]:
        chat = chat_id if chat_id is not None else ctx.chat_ids[update_id % len(ctx.chat_ids)]
        user = {
            "id": abs(chat) or 1,
            "is_bot": False,
            "first_name": text[:20] or "读者",
            "username": "reader",
        }
        chat_object = {
            "id": chat,
            "type": "private" if chat > 0 else "supergroup",
            "first_name": "读者",
            "title": text[:30],
        }
        message: dict[str, Any] = {
            "message_id": update_id % 10**6,
            "from": user,
            "chat": chat_object,
            "date": int(ctx.now) if date is None else date,
            "text": text,
        }
        if kind == "command":
            message["text"] = f"{command} {argument}".strip()
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        elif kind == "message" and entity != (0, 0):
            message["entities"] = [{"type": "bold", "offset": entity[0], "length": entity[1]}]
        update: dict[str, Any] = {"update_id": update_id}
        if kind in ("message", "command", "edited_message", "channel_post"):
            update[kind if kind in ("edited_message", "channel_post") else "message"] = message
        elif kind == "sticker":
            message.pop("text")
            message["sticker"] = {
                "file_id": "x",
                "file_unique_id": "y",
                "type": "regular",
                "width": 1,
                "height": 1,
                "is_animated": False,
                "is_video": False,
            }
            update["message"] = message
        elif kind == "callback_query":
            update["callback_query"] = {
                "id": str(update_id),
                "from": user,
                "message": message,
                "chat_instance": "1",
                "data": data,
            }
        elif kind == "inline_query":
            update["inline_query"] = {
                "id": str(update_id),
                "from": user,
                "query": text[:256],
                "offset": offset,
            }
        else:
            update[text[:20] or "poll"] = {"id": "1"}
        for position, value in replacements:
            replace_somewhere(update, position, value)
        return update

    return build


def replace_somewhere(document: dict[str, Any], position: int, value: Any) -> None:
    """Replace the `position`-th value (depth first, wrapping around) of a nested dict with `value`."""
    slots: list[tuple[dict[str, Any], str]] = []

    def walk(node: dict[str, Any]) -> None:
        for key, child in node.items():
            slots.append((node, key))
            if isinstance(child, dict):
                walk(child)

    walk(document)
    parent, key = slots[position % len(slots)]
    parent[key] = value


@st.composite
def telegram(draw: st.DrawFn) -> Recipe:
    update = draw(telegram_update())
    secret = draw(st.sampled_from(["right"] * 8 + ["missing", "wrong", "empty", "longer", "non-ascii"]))
    encoding = draw(
        st.sampled_from(
            [
                "json",
                "json",
                "json",
                "nan",
                "deep-list",
                "deep-object",
                "big-int",
                "bytes",
                "not-object",
                "no-update-id",
            ]
        )
    )
    depth = draw(st.integers(10, 200_000))
    junk = draw(random_bytes(MAX_BODY + 2048))
    content_type = draw(st.sampled_from(["application/json", "application/json", "text/plain", None]))

    def build(ctx: Context) -> Request:
        headers = []
        value = {
            "right": TELEGRAM_SECRET,
            "wrong": TELEGRAM_SECRET[::-1],
            "empty": "",
            "longer": TELEGRAM_SECRET + "x",
            "non-ascii": TELEGRAM_SECRET + "量",
        }
        if secret != "missing":
            headers.append(("X-Telegram-Bot-Api-Secret-Token", value[secret]))
        if content_type:
            headers.append(("Content-Type", content_type))
        return Request("POST", "/telegram", headers, telegram_body(ctx, update, encoding, depth, junk))

    return build


def telegram_body(
    ctx: Context, update: Callable[[Context], dict[str, Any]], encoding: str, depth: int, junk: bytes
) -> bytes:
    if encoding == "nan":
        return b'{"update_id": NaN, "message": {"message_id": Infinity, "chat": {"id": -Infinity}}}'
    if encoding == "deep-list":
        depth = min(depth, MAX_BODY // 2 - 50)
        return b'{"update_id": 1, "message": ' + b"[" * depth + b"]" * depth + b"}"
    if encoding == "deep-object":
        depth = min(depth, MAX_BODY // 7 - 50)
        return b'{"update_id": 2, "x": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    if encoding == "big-int":
        return b'{"update_id": ' + b"9" * min(depth, 100_000) + b"}"
    if encoding == "bytes":
        return junk
    if encoding == "not-object":
        return json.dumps([update(ctx)]).encode()
    data = update(ctx)
    if encoding == "no-update-id":
        data.pop("update_id", None)
    return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogateescape")


# --- the Git push webhook ----------------------------------------------------------------------------------


@st.composite
def git_push(draw: st.DrawFn) -> Recipe:
    """Push events as GitHub and Gitea send them (signed over the body), between the repository's real
    commits, unknown ones and hostile values; other events and refs; bodies that are not push events."""
    # A commit by its index in ctx.commits, or by what it is.
    commits: list[int | str] = [0, 1, 2, "zero", "unknown", "hostile"]
    before = draw(st.sampled_from(commits))
    after = draw(st.sampled_from([1, 2, *commits]))
    ref = draw(usually(st.just("refs/heads/main"), st.one_of(st.just("refs/heads/other"), hostile_text(40))))
    event = draw(st.sampled_from(["push"] * 6 + ["ping", "issues", "", None]))
    event_header = draw(st.sampled_from(["X-GitHub-Event", "X-Gitea-Event"]))
    signed = draw(st.sampled_from(["right"] * 8 + ["missing", "wrong", "empty", "sha1", "upper", "bare"]))
    encoding = draw(st.sampled_from(["json"] * 6 + ["form", "bytes", "deep", "not-object", "big-int"]))
    hostile = draw(hostile_text(80))
    depth = draw(st.integers(10, 200_000))
    junk = draw(random_bytes(MAX_BODY + 2048))

    def build(ctx: Context) -> Request:
        def commit(which: int | str) -> str:
            if isinstance(which, int):
                return ctx.commits[which]
            return {"zero": "0" * 40, "unknown": "1" * 40}.get(which, hostile)

        document = {"ref": ref, "before": commit(before), "after": commit(after), "commits": []}
        text = json.dumps(document).encode()
        body = {
            "json": text,
            "form": b"payload=" + quote(text).encode(),
            "bytes": junk,
            "deep": b"[" * min(depth, MAX_BODY // 2 - 10) + b"]" * min(depth, MAX_BODY // 2 - 10),
            "not-object": b'["push"]',
            "big-int": b'{"ref": ' + b"9" * min(depth, 100_000) + b"}",
        }[encoding]
        digest = hmac.new(GIT_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = [("Content-Type", "application/json")]
        signature = {
            "right": f"sha256={digest}",
            "wrong": "sha256=" + hmac.new(b"wrong", body, hashlib.sha256).hexdigest(),
            "empty": "",
            "sha1": "sha1=" + hashlib.sha1(body).hexdigest(),  # the shape of GitHub's older header
            "upper": f"sha256={digest.upper()}",
            "bare": digest,
        }
        if signed != "missing":
            headers.append(("X-Hub-Signature-256", signature[signed]))
        if event is not None:
            headers.append((event_header, event))
        return Request("POST", "/hooks/git", headers, body)

    return build


def git_repository(folder: Path) -> tuple[Path, tuple[str, ...]]:
    """An upstream repository with three commits on main (a README, an issue, the issue broken) and the
    service's clone of its first commit: the hook's `git fetch` brings the others. (clone, commits)."""

    def git(cwd: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=fuzz", "-c", "user.email=fuzz@example.com", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    upstream, editor, clone = folder / "upstream.git", folder / "editor", folder / "clone"
    git(folder, "init", "--quiet", "--bare", "--initial-branch=main", str(upstream))
    git(folder, "clone", "--quiet", str(upstream), str(editor))
    git(editor, "checkout", "--quiet", "-B", "main")
    commits: list[str] = []
    issue = editor / "issues" / "2031-01-01.md"
    for path, text in (
        (editor / "README.md", "# 简报\n"),
        (issue, minimal_issue("2031-01-01")),
        (issue, "# 嵌入式AI简报 (2031-01-01)\n"),
    ):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        git(editor, "add", "--all")
        git(editor, "commit", "--quiet", "-m", path.name)
        git(editor, "push", "--quiet", "origin", "main")
        commits.append(git(editor, "rev-parse", "HEAD"))
        if len(commits) == 1:
            git(folder, "clone", "--quiet", str(upstream), str(clone))
    return clone, tuple(commits)


# --- email sign-up, confirm, unsubscribe, tracking --------------------------------------------------------

EMAILS = st.from_regex(
    r"[a-z0-9][a-z0-9._+-]{0,20}@[a-z0-9][a-z0-9-]{0,15}\.(com|org|cn|example)", fullmatch=True
)


@st.composite
def subscribe(draw: st.DrawFn) -> Recipe:
    """The sign-up form as an issue page posts it (with its CSRF cookie and field), with hostile
    addresses and topics, broken encodings, or without or with a wrong CSRF pair or Origin."""
    odd_emails = st.one_of(
        EMAILS.map(lambda e: e.upper()),
        EMAILS.map(lambda e: f" {e} "),
        EMAILS.map(lambda e: e + "\r\nBcc: victim@example.com"),
        st.just("a" * 64 + "@" + "b" * 185 + ".com"),
        big_text(2000).map(lambda t: t + "@example.com"),
        hostile_text(100),
    )
    email = draw(usually(EMAILS, odd_emails))
    topics = draw(
        st.lists(st.one_of(hostile_text(40), st.sampled_from(["量化", "NPU", "剪枝"])), max_size=30)
    )
    odd_encodings = [
        "multipart",
        "file",
        "json",
        "bad-percent",
        "bad-utf8",
        "charset",
        "no-email",
        "two-emails",
    ]
    encoding = draw(usually(st.sampled_from(["form", "multipart"]), st.sampled_from(odd_encodings)))
    odd_csrf = ["none", "no-cookie", "no-field", "wrong-field", "other-cookie", "evil-origin", "null-origin"]
    csrf = draw(usually(st.sampled_from(["right", "right-with-origin"]), st.sampled_from(odd_csrf)))

    def build(ctx: Context) -> Request:
        headers, pairs = csrf_parts(ctx, csrf)
        pairs += [("email", email), *(("topics", topic) for topic in topics)]
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        body = query_string(pairs).encode()
        if encoding in ("multipart", "file"):
            body, content_type = multipart(pairs, file=encoding == "file")
            headers[-1] = ("Content-Type", content_type)
        elif encoding == "json":
            body = json.dumps(dict(pairs)).encode()
            headers[-1] = ("Content-Type", "application/json")
        elif encoding == "bad-percent":
            body += b"&email=%zz%e9%87&topics=%"
        elif encoding == "bad-utf8":
            body += b"&email=\xff\xfe%C0%AF@example.com&topics=\xed\xa0\x80"
        elif encoding == "charset":
            charset = re.sub(r"[\x00-\x1f\x7f]", "", email[:20]) or "x"
            headers[-1] = ("Content-Type", "application/x-www-form-urlencoded; charset=" + charset)
        elif encoding == "no-email":
            body = query_string([pair for pair in pairs if pair[0] != "email"]).encode()
        elif encoding == "two-emails":
            body += b"&" + query_string([("email", "second@example.com")]).encode()
        return Request("POST", "/subscribe", headers, body)

    return build


def csrf_parts(ctx: Context, how: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The headers and form fields of the CSRF pair an issue page handed out, or a spoilt pair."""
    cookie_name, cookie_value, field = ctx.csrf
    cookie = [("Cookie", f"{cookie_name}={cookie_value}")]
    headers = {
        "right": cookie,
        "right-with-origin": [*cookie, ("Origin", PUBLIC_URL)],
        "no-field": cookie,
        "wrong-field": cookie,
        "other-cookie": [("Cookie", f"{cookie_name}={cookie_value[::-1]}")],
        "evil-origin": [*cookie, ("Origin", "https://evil.example")],
        "null-origin": [*cookie, ("Origin", "null")],
    }.get(how, [])
    fields = {"no-field": [], "wrong-field": [("csrf_token", field[::-1])], "none": []}.get(
        how, [("csrf_token", field)]
    )
    return list(headers), list(fields)


def multipart(pairs: list[tuple[str, str]], *, file: bool) -> tuple[bytes, str]:
    boundary = "fuzz" + uuid.uuid4().hex
    parts = []
    for name, value in pairs:
        disposition = f'form-data; name="{name}"' + ('; filename="a.txt"' if file else "")
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + value.encode("utf-8", "surrogateescape")
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@st.composite
def token_value(draw: st.DrawFn, pool: Callable[[Context], tuple[str, ...]]) -> Callable[[Context], str]:
    """A token for a token route: a valid one, a stale one, one character off, forged, or garbage."""
    how = draw(
        st.sampled_from(
            ["valid", "valid", "valid", "stale", "mutated", "mutated", "forged", "garbage", "long"]
        )
    )
    pick = draw(st.integers(0, 10**6))
    mutation_seed = draw(st.integers(0, 2**32))
    garbage = draw(
        st.one_of(
            hostile_text(80),
            st.from_regex(r"[A-Za-z0-9_-]{39}", fullmatch=True),
            st.from_regex(r"[a-z2-7]{8,32}", fullmatch=True),
        )
    )
    forged_id = draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 50)))
    issued = draw(st.integers(0, 2**32 - 1))
    length = draw(st.integers(40, 6000))

    def build(ctx: Context) -> str:
        tokens = pool(ctx)
        valid = tokens[pick % len(tokens)] if tokens else "x"
        if how == "valid":
            return valid
        if how == "stale":
            stale = ctx.stale_tokens
            return stale[pick % len(stale)] if stale else valid
        if how == "mutated":
            return _mutated(valid, mutation_seed)
        if how == "forged":
            head = struct.pack(">BQI", 1, forged_id, issued)
            return base64.urlsafe_b64encode(head + secrets.token_bytes(16)).decode().rstrip("=")
        if how == "long":
            return (valid * (length // max(1, len(valid)) + 1))[:length]
        return garbage

    return build


def _mutated(token: str, number: int) -> str:
    """One character of `token` changed, dropped or added, chosen by `number` (deterministic)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if not token:
        return alphabet[number % len(alphabet)]
    index = number % len(token)
    how = (number // len(token)) % 4
    if how == 0:
        char = alphabet[(alphabet.find(token[index]) + 1 + number % 63) % len(alphabet)]
        return token[:index] + char + token[index + 1 :]
    if how == 1:
        return token[:index] + token[index + 1 :]
    if how == 2:
        return token[:index] + alphabet[number % len(alphabet)] + token[index:]
    return token.swapcase()


def token_route(
    prefix: str,
    methods: list[str],
    pool: Callable[[Context], tuple[str, ...]],
    *,
    bodies: bool = False,
    settle: bool = False,
    refused: bool = False,
) -> st.SearchStrategy[Recipe]:
    """Requests of `prefix`/{token}; `settle`: a GET's accepted answer writes later (Request.settle);
    `refused`: every request must be refused (a form posted without its CSRF pair)."""

    @st.composite
    def requests(draw: st.DrawFn) -> Recipe:
        token = draw(token_value(pool))
        method = draw(st.sampled_from(methods))
        body = (
            draw(st.one_of(st.just(b"List-Unsubscribe=One-Click"), random_bytes(5000), st.none()))
            if bodies
            else None
        )
        content_type = draw(
            st.sampled_from(
                ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
            )
        )
        tail = draw(st.sampled_from(["", "", "", "/", "?x=1", "/extra", "#frag"]))
        encode = draw(st.booleans())

        def build(ctx: Context) -> Request:
            value = token(ctx)
            segment = quote(value.encode("utf-8", "surrogateescape"), safe="" if encode else "/")
            headers = [("Content-Type", content_type)] if body is not None else []
            target = f"{prefix}/{segment}{tail}"
            return Request(
                method, target, headers, body, settle=settle and method == "GET", must_refuse=refused
            )

        return build

    return st.one_of(requests(), requests(), requests(), garbage_for(f"{prefix}/x", methods))


@st.composite
def redirect_reader(draw: st.DrawFn) -> Recipe:
    """GET /r/{token}?s=...: a stored link's token (or one off) with the reader id a subscriber's mail
    carries (JIANBAO_TRACK_SUBSCRIBERS): a valid one, one for no subscriber, one character off, forged,
    long, garbage, several, empty."""
    token = draw(token_value(lambda ctx: ctx.link_tokens))
    how = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "valid",
                "stale",
                "mutated",
                "forged",
                "long",
                "garbage",
                "two",
                "empty",
                "bare",
            ]
        )
    )
    pick = draw(st.integers(0, 10**6))
    garbage = draw(
        st.one_of(hostile_text(80), st.from_regex(r"[A-Za-z0-9_=+/-]{12,20}", fullmatch=True), huge_numbers())
    )
    length = draw(st.integers(17, 6000))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))
    user_agent = draw(
        st.sampled_from([None, "Mozilla/5.0", "facebookexternalhit/1.1", "Slackbot-LinkExpanding 1.0"])
    )

    def build(ctx: Context) -> Request:
        readers = ctx.reader_ids or ("x" * 16,)
        valid = readers[pick % len(readers)]
        stale = ctx.stale_reader_ids[pick % len(ctx.stale_reader_ids)] if ctx.stale_reader_ids else valid
        values = {
            "valid": [valid],
            "stale": [stale],
            "mutated": [_mutated(valid, pick)],
            "forged": [base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()],
            "long": [(valid * (length // 16 + 1))[:length]],
            "garbage": [garbage],
            "two": [valid, stale],
            "empty": [""],
            "bare": [],
        }[how]
        segment = quote(token(ctx).encode("utf-8", "surrogateescape"), safe="")
        target = with_query(f"/r/{segment}", [("s", value) for value in values])
        if how == "bare":
            target += "?s"
        headers = [] if user_agent is None else [("User-Agent", user_agent)]
        return Request(method, target, headers, settle=method == "GET")

    return build


# --- the site --------------------------------------------------------------------------------------------


@st.composite
def search(draw: st.DrawFn) -> Recipe:
    q = draw(st.one_of(st.sampled_from(COMMAND_WORDS), hostile_text(200), big_text(2500), st.none()))
    limit = draw(st.one_of(st.none(), huge_numbers(), st.integers(-10, 200).map(str)))
    offset = draw(st.one_of(st.none(), huge_numbers(), st.integers(-10, 10**6).map(str)))
    extra = draw(
        st.lists(st.tuples(st.sampled_from(["q", "limit", "offset", "x"]), hostile_text(20)), max_size=3)
    )

    def build(ctx: Context) -> Request:
        pairs = [
            (name, value)
            for name, value in (("q", q), ("limit", limit), ("offset", offset))
            if value is not None
        ]
        return Request("GET", with_query("/search", pairs + extra))

    return build


INVALID_DATES = [
    "2020-02-30",
    "0000-01-01",
    "9999-12-31",
    "99999-01-01",
    "2020-13-01",
    "2020-7-2",
    "２０２０-07-02",
    "2020-07-02T00:00",
    "2020-W27-4",
    "-2020-07-02",
]


@st.composite
def date_segment(draw: st.DrawFn) -> Callable[[Context], str]:
    """An issue's date as a path segment: a real one (twice as often), one character off, invalid,
    garbage, or without its dashes; percent-encoded."""
    how = draw(st.sampled_from(["real", "real", "mutated", "invalid", "garbage", "compact"]))
    pick = draw(st.integers(0, 10**6))
    number = draw(st.integers(0, 2**32))
    invalid = draw(st.sampled_from(INVALID_DATES))
    garbage = draw(hostile_text(100))

    def build(ctx: Context) -> str:
        real = ctx.dates[pick % len(ctx.dates)]
        value = {
            "real": real,
            "mutated": _mutated(real, number),
            "invalid": invalid,
            "garbage": garbage,
            "compact": real.replace("-", ""),
        }[how]
        return quote(value.encode("utf-8", "surrogateescape"), safe="")

    return build


@st.composite
def issue_page(draw: st.DrawFn) -> Recipe:
    date = draw(date_segment())
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))
    return lambda ctx: Request(method, "/issues/" + date(ctx))


def static_page(path: str) -> st.SearchStrategy[Recipe]:
    @st.composite
    def plain(draw: st.DrawFn) -> Recipe:
        pairs = draw(st.lists(st.tuples(hostile_text(20), hostile_text(40)), max_size=4))
        headers = draw(st.lists(st.sampled_from(ODD_HEADERS), max_size=3))
        method = draw(st.sampled_from(["GET", "GET", "HEAD"]))
        return lambda ctx: Request(method, with_query(path, pairs), list(headers))

    return st.one_of(plain(), plain(), garbage_for(path, ["GET"]))


# --- the admin API ---------------------------------------------------------------------------------------

API_OPERATIONS = [
    ("GET", "/api/status"),
    ("POST", "/api/broadcasts"),
    ("GET", "/api/broadcasts/{id}"),
    ("POST", "/api/broadcasts/{id}/pause"),
    ("POST", "/api/broadcasts/{id}/resume"),
    ("POST", "/api/broadcasts/{id}/cancel"),
    ("GET", "/api/openapi.json"),
]


@st.composite
def broadcast_body(draw: st.DrawFn) -> Callable[[Context], bytes]:
    """A POST /api/broadcasts body: mostly the right shape with hostile values, sometimes not JSON at all."""
    date = draw(usually(st.just("real"), st.none() | st.dates().map(str) | hostile_text(40) | json_values(3)))
    odd_channels = st.one_of(st.sampled_from(["telegram", "fax"]), json_values(4))
    channels = draw(
        usually(
            st.none() | st.lists(st.sampled_from(["telegram", "email", "wechat"]), max_size=3), odd_channels
        )
    )
    odd_times = [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "2030-01-01 08:00",
        "now",
        "2030-02-30 08:00",
        "2030-01-01T25:00",
    ]
    at = draw(
        usually(
            st.none() | st.datetimes().map(str),
            st.sampled_from(odd_times) | hostile_text(40) | json_values(2),
        )
    )
    flags = draw(st.tuples(usually(st.booleans(), json_values(1)), usually(st.booleans(), json_values(1))))
    dry_run_usually = draw(st.sampled_from([True, True, True, False]))
    extra = draw(st.dictionaries(hostile_text(10), json_values(2), max_size=1))
    shape = draw(st.sampled_from(["object"] * 8 + ["deep", "big", "bytes", "array", "number", "huge-int"]))
    depth = draw(st.integers(10, 200_000))
    junk = draw(random_bytes(20_000))

    def build(ctx: Context) -> bytes:
        if shape == "deep":
            depth_ = min(depth, MAX_BODY // 2 - 10)
            return b"[" * depth_ + b"]" * depth_
        if shape == "big":
            return b'{"date": "' + b"x" * (16 * 1024 + len(junk)) + b'"}'
        if shape == "bytes":
            return junk
        if shape == "array":
            return b'[{"date": "2020-07-02"}]'
        if shape == "number":
            return b"1e999999"
        if shape == "huge-int":
            return b'{"date": ' + b"9" * min(depth, 15_000) + b"}"
        body: dict[str, Any] = {}
        if date is not None:
            body["date"] = ctx.dates[depth % len(ctx.dates)] if date == "real" else date
        if channels is not None:
            body["channels"] = channels
        if at is not None:
            body["at"] = at
        body["wechat_text"], body["dry_run"] = flags
        if dry_run_usually:
            body["dry_run"] = True
        body |= extra
        return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8", "surrogateescape")

    return build


@st.composite
def admin(draw: st.DrawFn) -> Recipe:
    """An admin operation, usually as an editor sends it (right method, token and content type, an id
    that exists), with hostile bodies and ids, wrong tokens from other addresses, unknown paths."""
    method, template = draw(st.sampled_from(API_OPERATIONS))
    method = draw(usually(st.just(method), st.sampled_from(WRONG_METHODS)))
    odd_ids = st.one_of(huge_numbers(), hostile_text(20), st.sampled_from(["1/", "01", "1.0", "-1", "1%2F"]))
    broadcast_id = draw(usually(st.integers(0, 8).map(str), odd_ids))
    wrong = ["missing", "wrong", "one-off", "basic", "lower", "spaces", "non-ascii", "long", "two"]
    auth = draw(usually(st.just("right"), st.sampled_from(wrong)))
    intruder = draw(st.integers(0, INTRUDER_ADDRESSES - 1))
    body = draw(broadcast_body())
    odd_types = st.sampled_from(["text/plain", "application/x-www-form-urlencoded", None])
    content_type = draw(usually(st.just("application/json"), odd_types))
    odd_paths = [
        "/api/",
        "/api",
        "/api/broadcasts/",
        "/api/nope",
        "/api/broadcasts/1/explode",
        "/api/status/",
    ]
    unknown = draw(usually(st.none(), st.sampled_from(odd_paths)))

    def build(ctx: Context) -> Request:
        path = template.replace("{id}", quote(broadcast_id.encode("utf-8", "surrogateescape"), safe=""))
        headers = authorization(auth)
        if content_type:
            headers.append(("Content-Type", content_type))
        payload = body(ctx) if method == "POST" or content_type else None
        source = "127.0.0.1" if auth == "right" else intruder_address(intruder)
        return Request(method, unknown or path, headers, payload, source=source)

    return build


def authorization(how: str) -> list[tuple[str, str]]:
    values = {
        "right": [f"Bearer {ADMIN_TOKEN}"],
        "wrong": ["Bearer not-the-token"],
        "one-off": [f"Bearer {ADMIN_TOKEN[:-1]}X"],
        "basic": [f"Basic {ADMIN_TOKEN}"],
        "lower": [f"bearer {ADMIN_TOKEN}"],
        "spaces": [f"Bearer   {ADMIN_TOKEN}\t"],
        "non-ascii": [f"Bearer {ADMIN_TOKEN}量化"],
        "long": ["Bearer " + "x" * 8000],
        "two": [f"Bearer {ADMIN_TOKEN}", "Bearer wrong"],
        "missing": [],
    }[how]
    return [("Authorization", value) for value in values]


@st.composite
def admin_raw(draw: st.DrawFn) -> Recipe:
    """Authorization bytes an HTTP client library will not send: invalid UTF-8, control characters."""
    value = draw(
        st.sampled_from(
            [
                b"Bearer \xff\xfe\xfd",
                b"Bearer \x80" + ADMIN_TOKEN.encode(),
                b"Bearer \x00",
                b"\xff",
                b"Bearer \xed\xa0\x80",
            ]
        )
    )
    path = draw(st.sampled_from([path for _, path in API_OPERATIONS]))
    intruder = draw(st.integers(0, INTRUDER_ADDRESSES - 1))

    def build(ctx: Context) -> Request:
        raw = raw_request(ctx, "GET", path.replace("{id}", "1"), [(b"Authorization", value)])
        return Request("RAW", path, raw=raw, source=intruder_address(intruder))

    return build


# --- the editors' console --------------------------------------------------------------------------------

CONSOLE_CHANNELS = ["telegram", "wechat", "email", "wecom", "feishu"]
RIGHT_CSRF = ("right", "right-with-origin")
CSRF_ODD = ["none", "no-cookie", "no-field", "wrong-field", "other-cookie", "evil-origin", "null-origin"]
SESSION_ODD = ["none", "forged", "mutated", "long", "empty"]
ODD_TIMES = [
    "0001-01-01 00:00",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31 23:59",
    "9999-12-31T23:59:59-23:59",
    "2030-02-30 08:00",
    "2030-01-01T25:00",
    "2030-01-01 08:00+99:00",
    "1e9",
    "now",
    "tomorrow 8:00",
    "2030-W01-1 08:00",
    "２０３０-01-01 08:00",
]
# Broken in one way each: multipart bodies as a careless client or a hostile one sends them.
MULTIPART_BREAKS = [
    "no-name",
    "no-end",
    "wrong-boundary",
    "no-boundary",
    "nested",
    "base64",
    "gzip-part",
    "header-bytes",
    "filename-star",
    "filename-star-nul",
    "charset-part",
    "long-header",
    "many-parts",
    "preamble",
    "lf-only",
]
FORM_CHARSETS = ["utf-16", "does-not-exist", "latin-1", "gbk", "", 'utf-8;x="', "量化"]
Part = tuple[str, bytes, str | None]  # a form field: name, value, and a file name for a file part


def sign_in_address(number: int) -> str:
    """One of the SIGN_IN_ADDRESSES console sign-ins come from."""
    number %= SIGN_IN_ADDRESSES
    return f"127.3.{number // 250}.{number % 250 + 1}"


@dataclass(frozen=True)
class Credentials:
    """How a console request is signed in and guarded: the session cookie ("right": EDITOR's; "spare":
    the session sign-outs end; or none, forged, one character off, too long, empty) and the CSRF pair
    (right, or spoilt as the sign-up form's, see csrf_parts)."""

    session: str
    csrf: str
    number: int = 0  # chooses the mutation of a "mutated" session

    def parts(self, ctx: Context) -> tuple[list[tuple[str, str]], list[Part]]:
        """The headers (one Cookie header with both cookies: a server reads only the first) and the
        CSRF field."""
        token = {
            "right": ctx.console_session,
            "spare": ctx.spare_session,
            "forged": secrets.token_urlsafe(32),
            "mutated": _mutated(ctx.console_session, self.number),
            "long": ctx.console_session * 5,
            "empty": "",
        }.get(self.session)
        cookie_name, cookie_value, field = ctx.console_csrf
        cookies = [] if token is None else [f"{SESSION_COOKIE}={token}"]
        if self.csrf not in ("none", "no-cookie"):
            cookies.append(
                f"{cookie_name}={cookie_value[::-1] if self.csrf == 'other-cookie' else cookie_value}"
            )
        headers = [("Cookie", "; ".join(cookies))] if cookies else []
        origin = {
            "right-with-origin": PUBLIC_URL,
            "evil-origin": "https://evil.example",
            "null-origin": "null",
        }
        if self.csrf in origin:
            headers.append(("Origin", origin[self.csrf]))
        fields: dict[str, list[Part]] = {
            "none": [],
            "no-field": [],
            "wrong-field": [("csrf_token", field[::-1].encode(), None)],
        }
        return headers, fields.get(self.csrf, [("csrf_token", field.encode(), None)])

    def must_refuse(self, method: str) -> bool:
        """Without a live session every console request is refused; without the CSRF pair, every POST."""
        if self.session not in ("right", "spare"):
            return True
        return method not in ("GET", "HEAD") and self.csrf not in RIGHT_CSRF


@st.composite
def credentials(draw: st.DrawFn) -> Credentials:
    """EDITOR's session and the right CSRF pair nine times in sixteen; else one of them spoilt."""
    session = draw(usually(st.just("right"), st.sampled_from(SESSION_ODD)))
    csrf = draw(usually(st.sampled_from(RIGHT_CSRF), st.sampled_from(CSRF_ODD)))
    return Credentials(session, csrf, draw(st.integers(0, 2**32)))


def multipart_body(parts: list[Part], breakage: str = "") -> tuple[bytes, str]:
    """A multipart/form-data body of `parts` and its Content-Type, broken as `breakage` says (one of
    MULTIPART_BREAKS; a break of one part goes to the last, so that the CSRF field before it stays whole)."""
    boundary = ("fuzz" + uuid.uuid4().hex).encode()
    eol = b"\n" if breakage == "lf-only" else b"\r\n"
    chunks = [b"\xff\x00 preamble" + eol] if breakage == "preamble" else []
    for index, (name, value, filename) in enumerate(parts):
        last = index == len(parts) - 1
        disposition = b"form-data"
        if not (breakage == "no-name" and last):
            disposition += b'; name="' + name.encode("utf-8", "surrogateescape") + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename.encode("utf-8", "surrogateescape") + b'"'
        if breakage == "filename-star" and last:
            disposition += b"; filename*=utf-8''%ff%fe%00.md"  # not UTF-8
        if breakage == "filename-star-nul" and last:
            disposition += b"; filename*=utf-8''a%00%01b.md"  # control characters in a name
        headers = [b"Content-Disposition: " + disposition]
        if last:
            headers += {
                "base64": [b"Content-Transfer-Encoding: base64"],
                "gzip-part": [b"Content-Encoding: gzip"],
                "header-bytes": [b"X-\xff: \x80\xfe", b"Content-Type: text/\xff"],
                "charset-part": [b"Content-Type: text/plain; charset=does-not-exist"],
                "long-header": [b"X-Long: " + b"a" * 20_000],
            }.get(breakage, [])
        chunks.append(b"--" + boundary + eol + eol.join(headers) + eol + eol + value + eol)
    if breakage == "nested":  # a part that is itself multipart (RFC 2388's old way of sending files)
        inner = b"inner" + boundary
        lines = [
            b"--" + boundary,
            b'Content-Disposition: form-data; name="file"',
            b"Content-Type: multipart/mixed; boundary=" + inner,
            b"",
            b"--" + inner,
            b'Content-Disposition: file; filename="a.md"',
            b"",
            b"x",
            b"--" + inner + b"--",
            b"",
        ]
        chunks.append(eol.join(lines))
    if breakage == "many-parts":
        chunks += [
            b"--" + boundary + eol + b'Content-Disposition: form-data; name="x"' + eol + eol + b"1" + eol
        ] * 5000
    if breakage != "no-end":
        chunks.append(b"--" + boundary + b"--" + eol)
    if breakage == "preamble":
        chunks.append(b"epilogue \xff")
    content_type = "multipart/form-data; boundary=" + (
        "other" if breakage == "wrong-boundary" else boundary.decode()
    )
    return b"".join(chunks), "multipart/form-data" if breakage == "no-boundary" else content_type


def form_body(parts: list[Part], encoding: str, odd: str = "") -> tuple[bytes, str | None]:
    """A console form's body and Content-Type: urlencoded ("form", file parts as plain fields) or
    multipart, or broken: JSON, bad percent-escapes, raw invalid UTF-8, an odd charset (`odd`), a
    broken multipart body (`odd` one of MULTIPART_BREAKS), over the body limit, no Content-Type."""
    urlencoded = urlencode([(name, value) for name, value, _ in parts], quote_via=quote).encode()
    form_type = "application/x-www-form-urlencoded"
    if encoding == "multipart":
        return multipart_body(parts)
    if encoding == "broken-multipart":
        return multipart_body(parts, odd)
    if encoding == "json":
        data = {name: value.decode("utf-8", "replace") for name, value, _ in parts}
        return json.dumps(data).encode(), "application/json"
    if encoding == "bad-percent":
        return urlencoded + b"&x=%zz%e9%87&%=%", form_type
    if encoding == "bad-utf8":
        return urlencoded + b"&\xff\xfe=\xed\xa0\x80&x=\xc0\xaf", form_type
    if encoding == "charset":
        return urlencoded, f"{form_type}; charset={odd}"
    if encoding == "huge":
        return urlencoded + b"&pad=" + b"a" * (MAX_BODY + len(odd)), form_type
    if encoding == "no-type":
        return urlencoded, None
    return urlencoded, form_type


@st.composite
def form_encoding(draw: st.DrawFn) -> tuple[str, str]:
    """(encoding, odd) for form_body: urlencoded or multipart three times in four."""
    odd_encodings = ["json", "bad-percent", "bad-utf8", "charset", "broken-multipart", "huge", "no-type"]
    encoding = draw(usually(st.sampled_from(["form", "multipart"]), st.sampled_from(odd_encodings)))
    if encoding == "broken-multipart":
        return encoding, draw(st.sampled_from(MULTIPART_BREAKS))
    if encoding == "charset":
        return encoding, draw(st.sampled_from(FORM_CHARSETS))
    return encoding, "x" * draw(st.integers(0, 4096)) if encoding == "huge" else ""


def console_request(
    ctx: Context,
    who: Credentials,
    method: str,
    target: str,
    fields: list[Part] | None = None,
    encoding: tuple[str, str] = ("form", ""),
) -> Request:
    """A console request from `who`: with a form body (the CSRF field first) when `fields` is given."""
    headers, csrf_field = who.parts(ctx)
    body = None
    if fields is not None:
        body, content_type = form_body(csrf_field + fields, *encoding)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
    return Request(method, target, headers, body, must_refuse=who.must_refuse(method))


def text_parts(pairs: list[tuple[str, str]]) -> list[Part]:
    return [(name, value.encode("utf-8", "surrogateescape"), None) for name, value in pairs]


# Signing in

WRONG_PASSWORDS = st.one_of(
    hostile_text(100),
    big_text(3000),
    st.integers(0, 2**32).map(lambda number: _mutated(EDITOR_PASSWORD, number)),
    st.sampled_from(
        [
            "",
            EDITOR_PASSWORD + "\x00",
            EDITOR_PASSWORD.upper(),
            " " + EDITOR_PASSWORD,
            EDITOR_PASSWORD * 40,  # over the 1,024 characters a password may have
            EDITOR_PASSWORD[:-1],
        ]
    ),
)


@st.composite
def console_sign_in(draw: st.DrawFn) -> Recipe:
    """The sign-in form as its page posts it, from one of the sign-in addresses: SIGN_IN_EDITOR with its
    right password (also as "  name\\t" and cut at 64 characters, which the form reads as the name),
    GUARDED_EDITOR with wrong ones, hostile names and passwords (huge, NUL, invalid UTF-8); in every
    form encoding, broken ones too; with the CSRF pair, a spoilt one or none; with an old session."""
    who = draw(st.sampled_from(["right"] * 3 + ["guarded"] * 2 + ["hostile"] * 3 + ["case", "padded", "cut"]))
    hostile_name = draw(
        st.one_of(
            hostile_text(80), big_text(5000), st.sampled_from([EDITOR, GUARDED_EDITOR + "\x00", "量化"])
        )
    )
    wrong = draw(WRONG_PASSWORDS)
    name, password = {
        "right": (SIGN_IN_EDITOR, EDITOR_PASSWORD),
        "guarded": (GUARDED_EDITOR, wrong),
        "hostile": (hostile_name, wrong),
        "case": (SIGN_IN_EDITOR.upper(), EDITOR_PASSWORD),
        "padded": (f"  {SIGN_IN_EDITOR}\t", EDITOR_PASSWORD),
        "cut": (SIGN_IN_EDITOR.ljust(64) + hostile_name, EDITOR_PASSWORD),
    }[who]
    # Invalid UTF-8 in the name or password itself, as raw bytes or percent-escaped.
    raw_bytes = draw(
        usually(st.just(b""), st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf", b"%ff%fe"]))
    )
    encoding = draw(form_encoding())
    csrf = draw(usually(st.sampled_from(RIGHT_CSRF), st.sampled_from(CSRF_ODD)))
    old = draw(usually(st.just("none"), st.sampled_from(["forged", "spare", "empty", "long"])))
    address = draw(st.integers(0, SIGN_IN_ADDRESSES - 1))
    method = draw(usually(st.just("POST"), st.sampled_from(["PUT", "GET", "DELETE"])))

    wrong_name = who in ("guarded", "hostile", "case")
    if not wrong_name and encoding[0] == "broken-multipart":
        # A broken part could reach SIGN_IN_EDITOR's password check with another password, and lock the
        # name that must always be able to sign in.
        encoding = ("multipart", "")

    def build(ctx: Context) -> Request:
        headers, csrf_field = Credentials(old, csrf).parts(ctx)
        tail = raw_bytes if who in ("guarded", "hostile") else b""
        fields: list[Part] = [
            ("name", name.encode("utf-8", "surrogateescape") + (tail if who == "hostile" else b""), None),
            ("password", password.encode("utf-8", "surrogateescape") + tail, None),
        ]
        body, content_type = form_body(csrf_field + fields, *encoding)
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        headers.append(("Connection", "close"))  # the pool of addresses holds no sockets open
        # GET is the sign-in page, other methods are not allowed: only a POST is refused for its form.
        refuse = method == "POST" and (wrong_name or csrf not in RIGHT_CSRF)
        return Request(
            method, "/console/sign-in", headers, body, source=sign_in_address(address), must_refuse=refuse
        )

    return build


@st.composite
def console_sign_out(draw: st.DrawFn) -> Recipe:
    """POST /console/sign-out: with the spare session (the first such request ends it), without a session
    or with a forged one, or with EDITOR's session but a spoilt CSRF pair (refused: it must stay)."""
    session = draw(st.sampled_from(["spare", "spare", "none", "forged", "mutated", "long", "right"]))
    csrf = draw(
        st.sampled_from(CSRF_ODD)
        if session == "right"
        else usually(st.sampled_from(RIGHT_CSRF), st.sampled_from(CSRF_ODD))
    )
    number = draw(st.integers(0, 2**32))
    encoding = draw(form_encoding())
    return lambda ctx: console_request(
        ctx, Credentials(session, csrf, number), "POST", "/console/sign-out", [], encoding
    )


@st.composite
def console_sign_in_page(draw: st.DrawFn) -> Recipe:
    """GET /console/sign-in with odd queries and headers, signed in (303 to the console) or not."""
    session = draw(st.sampled_from(["none", "none", "right", "forged", "long"]))
    pairs = draw(st.lists(st.tuples(hostile_text(20), hostile_text(40)), max_size=4))
    odd = draw(st.lists(st.sampled_from(ODD_HEADERS), max_size=2))
    method = draw(st.sampled_from(["GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        headers, _ = Credentials(session, "right").parts(ctx)
        return Request(method, with_query("/console/sign-in", pairs), headers + list(odd))

    return build


# Issues: import, preview, frames, test sends

MARKDOWN_MUTATIONS = [
    "drop-line",
    "repeat-line",
    "insert",
    "swap",
    "item",
    "section",
    "field",
    "truncate",
    "flip-byte",
    "nest",
    "crlf",
    "cr",
    "bom",
    "nul",
    "gbk",
    "utf16",
    "huge",
    "empty",
    "random",
]
TITLE_DATE = re.compile(rb"^(# [^\n]*?\()(\d{4}-\d{2}-\d{2})(\))", re.MULTILINE)


@functools.cache
def demo_issues() -> tuple[bytes, ...]:
    """The bundled demo issues' bytes: what near-valid uploads are made of."""
    return tuple(path.read_bytes() for path in sorted(demo_issue_dir().glob("*.md")))


@st.composite
def issue_markdown(draw: st.DrawFn) -> bytes:
    """An issue file: a demo issue under a new date (imported), its own (taken: 409 unless replaced) or an
    impossible one; as it is half of the time, else with one to three mutations (see mutate_markdown)."""
    pick = draw(st.integers(0, 10**6))
    how = draw(st.sampled_from(["new", "own", "new", "odd"]))
    new_date = draw(st.dates(dt.date(1990, 1, 1), dt.date(2099, 12, 31)).map(str))
    odd_date = draw(st.sampled_from(INVALID_DATES) | hostile_text(20))
    date = {"new": new_date, "odd": odd_date}.get(how)
    mutation = st.tuples(st.sampled_from(MARKDOWN_MUTATIONS), st.integers(0, 2**32), hostile_text(200))
    mutations = draw(st.one_of(st.just([]), st.lists(mutation, min_size=1, max_size=3)))
    junk = draw(random_bytes(MAX_ISSUE_BYTES + 4096))
    issues = demo_issues()
    data = issues[pick % len(issues)]
    if date is not None:
        title = date.encode("utf-8", "surrogateescape")
        data = TITLE_DATE.sub(lambda match: match.group(1) + title + match.group(3), data, count=1)
    for kind, number, text in mutations:
        data = mutate_markdown(data, kind, number, text.encode("utf-8", "surrogateescape"), junk)
    return data


def mutate_markdown(data: bytes, kind: str, number: int, text: bytes, junk: bytes) -> bytes:
    """`data` changed in one way (one of MARKDOWN_MUTATIONS), at a place `number` chooses."""
    lines = data.split(b"\n")
    at = number % len(lines)
    if kind == "drop-line":
        del lines[at]
    elif kind == "repeat-line":
        lines[at:at] = [lines[at]] * (1 + number % 50)
    elif kind == "insert":
        lines.insert(at, text)
    elif kind == "swap":
        other = number // 7 % len(lines)
        lines[at], lines[other] = lines[other], lines[at]
    elif kind == "item":
        lines.insert(at, b"- [" + text + b"] [" + text + b" | " + text + b"](" + text + b")")
    elif kind == "section":
        lines.insert(at, b"## " + text)
    elif kind == "field":
        lines.insert(at, ("  摘要：", "  标题：")[number % 2].encode() + text)
    elif kind == "truncate":  # mid-character too: the rest is not UTF-8
        return data[: number % (len(data) + 1)]
    elif kind == "flip-byte" and data:
        flipped = bytearray(data)
        flipped[number % len(flipped)] ^= 1 << number % 8
        return bytes(flipped)
    elif kind == "nest":  # markdown-it's slow paths: long runs of brackets, quotes, list markers
        lines.insert(at, (b"[", b"> ", b"- ", b"*", b"`")[number % 5] * (1000 + number % 60_000))
    elif kind in ("crlf", "cr"):
        return data.replace(b"\n", b"\r\n" if kind == "crlf" else b"\r")
    elif kind == "bom":
        return b"\xef\xbb\xbf" + data
    elif kind == "nul":
        return data[:at] + b"\x00" + data[at:]
    elif kind in ("gbk", "utf16"):
        return data.decode("utf-8", "replace").encode("gbk" if kind == "gbk" else "utf-16", "replace")
    elif kind == "huge":
        return (data * (MAX_ISSUE_BYTES // max(1, len(data)) + 2))[: MAX_ISSUE_BYTES + 1 + number % 4096]
    elif kind == "empty":
        return (b"", b" \n\n\t", b"\xef\xbb\xbf")[number % 3]
    elif kind == "random":
        return junk
    return b"\n".join(lines)


@st.composite
def console_import(draw: st.DrawFn) -> Recipe:
    """POST /console/issues/new: an issue file (near-valid or not) as the `file` upload or the pasted
    `markdown` field, or both or neither; with odd file names and `replace` values."""
    who = draw(credentials())
    markdown = draw(issue_markdown())
    how = draw(
        usually(st.sampled_from(["file", "markdown"]), st.sampled_from(["both", "neither", "no-filename"]))
    )
    odd_names = st.sampled_from(
        ["../../etc/passwd", "a" * 500, "量化.md", "", "a.md\r\nX-Evil: 1", "a\x00.md"]
    )
    filename = draw(usually(st.just("issue.md"), odd_names | hostile_text(60)))
    replace = draw(
        usually(
            st.sampled_from([None, "yes"]), st.sampled_from(["no", "YES", "on", "yes\x00"]) | hostile_text(20)
        )
    )
    encoding = draw(usually(st.just(("multipart", "")), form_encoding()))

    def build(ctx: Context) -> Request:
        fields: list[Part] = []
        if how in ("file", "both", "no-filename"):
            fields.append(("file", markdown, None if how == "no-filename" else filename))
        if how in ("markdown", "both"):
            fields.append(("markdown", markdown, None))
        if replace is not None:
            fields.append(("replace", replace.encode("utf-8", "surrogateescape"), None))
        return console_request(ctx, who, "POST", "/console/issues/new", fields, encoding)

    return build


@st.composite
def console_issue(draw: st.DrawFn) -> Recipe:
    """GET /console/issues/{date}: real and hostile dates, `?digest=` values (a view is audited)."""
    who = draw(credentials())
    date = draw(date_segment())
    digest = draw(
        st.lists(st.sampled_from(["1", "0", "", "true", "1\x00", "01"]) | hostile_text(20), max_size=2)
    )
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        target = with_query(f"/console/issues/{date(ctx)}", [("digest", value) for value in digest])
        return console_request(ctx, who, method, target)

    return build


def channel_names() -> st.SearchStrategy[str]:
    odd = st.sampled_from(["", "EMAIL", "fax", "email ", "wechat%00", "..", "telegram/x"])
    return usually(st.sampled_from(CONSOLE_CHANNELS), odd | hostile_text(40))


@st.composite
def console_frame(draw: st.DrawFn) -> Recipe:
    """GET /console/issues/{date}/frame/{channel}: the email and WeChat frames, channels without one,
    channels that do not exist."""
    who = draw(credentials())
    date = draw(date_segment())
    channel = draw(channel_names())

    def build(ctx: Context) -> Request:
        segment = quote(channel.encode("utf-8", "surrogateescape"), safe="")
        return console_request(ctx, who, "GET", f"/console/issues/{date(ctx)}/frame/{segment}")

    return build


@st.composite
def console_test_send(draw: st.DrawFn) -> Recipe:
    """POST /console/issues/{date}/test-send to an address of the channel's own kind (known to the fakes
    or not), another channel's, or garbage."""
    who = draw(credentials())
    date = draw(date_segment())
    channel = draw(channel_names())
    how = draw(usually(st.just("own"), st.sampled_from(["other", "hostile", "empty", "long", "missing"])))
    pick = draw(st.integers(0, 10**6))
    hostile = draw(hostile_text(100))
    email = draw(EMAILS)
    encoding = draw(form_encoding())

    def build(ctx: Context) -> Request:
        robot = (*ROBOT_KEYS, "fuzz-robot-unknown00")[pick % 3]
        addresses = {
            "telegram": str(ctx.chat_ids[pick % len(ctx.chat_ids)]),
            "wechat": ctx.openids[pick % len(ctx.openids)],
            "email": email,
            "wecom": robot if pick % 2 else f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={robot}",
            "feishu": robot if pick % 2 else f"https://open.feishu.cn/open-apis/bot/v2/hook/{robot}",
        }
        others = list(addresses.values())
        address = {
            "own": addresses.get(channel, hostile),
            "other": others[pick % len(others)],
            "hostile": hostile,
            "empty": "",
            "long": "a" * 400 + "@example.com",
        }.get(how)
        pairs = [("channel", channel)] + ([] if address is None else [("address", address)])
        target = f"/console/issues/{date(ctx)}/test-send"
        return console_request(ctx, who, "POST", target, text_parts(pairs), encoding)

    return build


# Broadcasts


@st.composite
def console_broadcast(draw: st.DrawFn) -> Recipe:
    """GET /console/issues/{date}/broadcast, and its POST: channel lists, `when`, and `at` times in the
    near future (a real broadcast, scheduled), just past (within the grace: now), far past, far future,
    out of range, not times at all."""
    who = draw(credentials())
    date = draw(date_segment())
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST"]))
    odd_channels = st.lists(hostile_text(50) | st.sampled_from(["TELEGRAM", "fax", ""]), max_size=4)
    chosen = draw(usually(st.lists(st.sampled_from(CONSOLE_CHANNELS), max_size=5, unique=True), odd_channels))
    when = draw(usually(st.sampled_from(["now", "later", "later"]), st.none() | hostile_text(20)))
    at_how = draw(st.sampled_from(["soon", "soon", "naive", "grace", "past", "odd", "none"]))
    minutes = draw(st.integers(10, 10**6))
    odd_at = draw(st.sampled_from(ODD_TIMES) | hostile_text(60) | big_text(200))
    wechat_text = draw(st.sampled_from([None, "yes", "no", "on"]))
    encoding = draw(form_encoding())
    pairs = draw(st.lists(st.tuples(hostile_text(20), hostile_text(40)), max_size=2))

    def build(ctx: Context) -> Request:
        target = f"/console/issues/{date(ctx)}/broadcast"
        if method == "GET":
            return console_request(ctx, who, "GET", with_query(target, pairs))
        now = dt.datetime.fromtimestamp(ctx.now, dt.UTC)
        at = {
            "soon": (now + dt.timedelta(minutes=minutes)).isoformat(timespec="minutes"),
            "naive": (now + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M"),  # in JIANBAO_TIMEZONE
            "grace": (now - dt.timedelta(minutes=2)).isoformat(timespec="minutes"),
            "past": (now - dt.timedelta(minutes=minutes)).isoformat(timespec="minutes"),
            "odd": odd_at,
        }.get(at_how)
        fields = [("channel", name) for name in chosen]
        fields += [] if when is None else [("when", when)]
        fields += [] if at is None else [("at", at)]
        fields += [] if wechat_text is None else [("wechat_text", wechat_text)]
        return console_request(ctx, who, "POST", target, text_parts(fields), encoding)

    return build


def broadcast_ids() -> st.SearchStrategy[str]:
    """Ids of the first broadcasts (1 and 2 seeded, see seed_desk; the `console` route starts the next
    ones), or odd ones."""
    odd = huge_numbers() | hostile_text(20) | st.sampled_from(["1/", "01", "1.0", "-1", "1%2F", "0x1", "１"])
    return usually(st.integers(1, 5).map(str), odd)


@st.composite
def console_page(draw: st.DrawFn) -> Recipe:
    """The console's other pages: home, the import form, the broadcasts, one broadcast and its progress
    panel (hostile ids), the audit trail (`?before=` values)."""
    who = draw(credentials())
    page = draw(
        st.sampled_from(
            [
                "/console",
                "/console/",
                "/console/issues/new",
                "/console/broadcasts",
                "/console/broadcasts/{id}",
                "/console/broadcasts/{id}",
                "/console/broadcasts/{id}/progress",
                "/console/audit",
                "/console/audit",
            ]
        )
    )
    broadcast_id = draw(broadcast_ids())
    before = draw(st.lists(huge_numbers() | hostile_text(20), max_size=2))
    pairs = draw(st.lists(st.tuples(hostile_text(20), hostile_text(40)), max_size=2))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        path = page.replace("{id}", quote(broadcast_id.encode("utf-8", "surrogateescape"), safe=""))
        query = [("before", value) for value in before] if page == "/console/audit" else pairs
        return console_request(ctx, who, method, with_query(path, query))

    return build


@st.composite
def console_steer(draw: st.DrawFn) -> Recipe:
    """POST /console/broadcasts/{id}/{verb}: pause, resume, cancel (of broadcasts the `console` route has
    started, and ids of none), hostile ids and verbs."""
    who = draw(credentials())
    broadcast_id = draw(broadcast_ids())
    verb = draw(
        usually(
            st.sampled_from(["pause", "resume", "cancel"]),
            st.sampled_from(["PAUSE", "start", "delete", "", "pause/", "pause%00", "progress"])
            | hostile_text(30),
        )
    )
    encoding = draw(form_encoding())

    def build(ctx: Context) -> Request:
        segments = [
            quote(value.encode("utf-8", "surrogateescape"), safe="") for value in (broadcast_id, verb)
        ]
        return console_request(ctx, who, "POST", "/console/broadcasts/{}/{}".format(*segments), [], encoding)

    return build


# After the send: figures, link fixes, issues compared


def _segment(value: str) -> str:
    return quote(value.encode("utf-8", "surrogateescape"), safe="")


@st.composite
def console_stats(draw: st.DrawFn) -> Recipe:
    """GET /console/broadcasts/{id}/stats, and stats.csv with ?part=channels|links or odd parts (the
    seeded broadcasts: 1 running with clicks, 2 cancelled, whose figures are then kept)."""
    who = draw(credentials())
    broadcast_id = draw(broadcast_ids())
    csv_page = draw(st.booleans())
    parts = draw(
        usually(
            st.lists(st.sampled_from(["channels", "links"]), max_size=1),
            st.lists(
                st.sampled_from(["garbage", "CHANNELS", "", "links\x00", "../links"]) | hostile_text(30),
                max_size=2,
            ),
        )
    )
    pairs = draw(st.lists(st.tuples(hostile_text(20), hostile_text(40)), max_size=1))
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        path = f"/console/broadcasts/{_segment(broadcast_id)}/stats" + (".csv" if csv_page else "")
        query = [("part", part) for part in parts] if csv_page else pairs
        return console_request(ctx, who, method, with_query(path, query))

    return build


HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example/x",
    "https:evil.example",
    "https://",
    "http://[::1",
    "https://evil.example/\r\nSet-Cookie: x=1",
    "https://例子.测试/量化?q=剪枝",
    "https://evil.example/\u202egnp.exe",
    "not a url",
    "ftp://example.com/a",
    "",
]


@st.composite
def console_fix_link(draw: st.DrawFn) -> Recipe:
    """POST /console/broadcasts/{id}/links: `url` one of the broadcast's tracked URLs (or not), `new_url`
    another real one (so that the pool keeps matching), or hostile: javascript:, data:, very long, not a
    URL, unicode."""
    who = draw(credentials())
    broadcast_id = draw(usually(st.just("1"), broadcast_ids()))
    pick = draw(st.integers(0, 10**6))
    old_how = draw(usually(st.just("real"), st.sampled_from(["hostile", "utm", "missing", "long"])))
    new_how = draw(
        usually(st.sampled_from(["real", "real", "query"]), st.sampled_from(["hostile", "long", "missing"]))
    )
    hostile = draw(st.sampled_from(HOSTILE_URLS) | hostile_text(100))
    length = draw(st.integers(2000, 12_000))
    encoding = draw(form_encoding())

    def build(ctx: Context) -> Request:
        urls = ctx.fix_urls or ("https://example.com/a",)
        old = urls[pick % len(urls)]
        new = urls[(pick // 7) % len(urls)]
        fields: list[tuple[str, str]] = []
        old_value = {
            "real": old,
            "hostile": hostile,
            "utm": old + ("&" if "?" in old else "?") + "utm_source=jianbao",
            "long": old + "a" * length,
        }.get(old_how)
        new_value = {
            "real": new,
            "query": new + ("&" if "?" in new else "?") + f"fixed={pick}",
            "hostile": hostile,
            "long": "https://example.com/" + "b" * length,
        }.get(new_how)
        fields += [] if old_value is None else [("url", old_value)]
        fields += [] if new_value is None else [("new_url", new_value)]
        target = f"/console/broadcasts/{_segment(broadcast_id)}/links"
        return console_request(ctx, who, "POST", target, text_parts(fields), encoding)

    return build


@st.composite
def console_compare(draw: st.DrawFn) -> Recipe:
    """GET /console/compare?n=: counts in and out of range, huge, signed, unicode digits, repeated."""
    who = draw(credentials())
    values = draw(
        st.lists(
            usually(
                st.integers(1, 60).map(str),
                huge_numbers()
                | hostile_text(20)
                | st.sampled_from(["0", "-1", "1e3", "０", "٣", " 5", "050"]),
            ),
            max_size=2,
        )
    )
    method = draw(st.sampled_from(["GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        return console_request(ctx, who, method, with_query("/console/compare", [("n", v) for v in values]))

    return build


# The subscriber desk

STATUS_VALUES = [status.value for status in SubscriberStatus]


def subscriber_id_segment(draw: st.DrawFn) -> Callable[[Context], str]:
    """A seeded subscriber's id, a desk subscriber's, one of none, or an odd one."""
    how = draw(usually(st.sampled_from(["any", "desk", "desk"]), st.sampled_from(["none", "odd"])))
    pick = draw(st.integers(0, 10**6))
    odd = draw(
        huge_numbers() | hostile_text(20) | st.sampled_from(["01", "1.0", "-1", "0x1", "１", "1/", "0"])
    )

    def build(ctx: Context) -> str:
        pool = ctx.desk_ids if how == "desk" else ctx.subscriber_ids
        if how == "none":
            return str(999_000 + pick % 1000)
        if how == "odd" or not pool:
            return _segment(odd)
        return str(pool[pick % len(pool)])

    return build


@st.composite
def console_subscriber_search(draw: st.DrawFn) -> Recipe:
    """GET /console/subscribers?q&match&channel&status&topic&after, real values and hostile ones."""
    who = draw(credentials())
    q = draw(
        usually(
            st.sampled_from(["", "desk", "reader1", "@example.com", "example", "oFuzz", "1000"]),
            hostile_text(80) | big_text(3000),
        )
    )
    match = draw(st.sampled_from([None, "prefix", "contains", "CONTAINS", ""]) | hostile_text(10))
    channel = draw(st.none() | channel_names())
    status = draw(
        st.none()
        | usually(st.sampled_from(STATUS_VALUES), st.sampled_from(["ACTIVE", "gone", ""]) | hostile_text(20))
    )
    topic = draw(
        st.none() | usually(st.sampled_from(["量化", "剪枝", "NPU"]), hostile_text(60) | big_text(500))
    )
    after = draw(st.none() | usually(st.integers(0, 200).map(str), huge_numbers() | hostile_text(20)))
    extra = draw(
        st.lists(
            st.sampled_from(["erased", "q", "after"]).flatmap(
                lambda k: st.tuples(st.just(k), huge_numbers() | hostile_text(20))
            ),
            max_size=2,
        )
    )
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        given = {"q": q, "match": match, "channel": channel, "status": status, "topic": topic, "after": after}
        pairs = [(name, value) for name, value in given.items() if value is not None] + extra
        return console_request(ctx, who, method, with_query("/console/subscribers", pairs))

    return build


@st.composite
def console_subscriber(draw: st.DrawFn) -> Recipe:
    """GET /console/subscribers/{id}: seeded ids, ids of none, odd ones."""
    who = draw(credentials())
    segment = subscriber_id_segment(draw)
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        return console_request(ctx, who, method, f"/console/subscribers/{segment(ctx)}")

    return build


@st.composite
def console_subscriber_change(draw: st.DrawFn) -> Recipe:
    """POST /console/subscribers/{id}/{status|topics|erase}. An erasure without the confirm box ticked
    (most of them) must be refused; a real one (rare) takes a desk subscriber away for good."""
    who = draw(credentials())
    segment = subscriber_id_segment(draw)
    verb = draw(
        usually(
            st.sampled_from(["status", "status", "topics", "topics", "erase"]),
            st.sampled_from(["STATUS", "delete", "", "erase/", "erase%00", "status.json"]) | hostile_text(20),
        )
    )
    status = draw(
        usually(st.sampled_from(STATUS_VALUES), st.sampled_from(["ACTIVE", "", "deleted"]) | hostile_text(30))
    )
    topics = draw(
        usually(
            st.sampled_from(["量化", "量化 剪枝", "", "NPU,INT8；量化"]),
            hostile_text(200)
            | st.just(" ".join(f"t{n}" for n in range(MAX_TOPICS + 5)))
            | st.just("x" * (MAX_TOPIC_LENGTH + 1))
            | big_text(3000),
        )
    )
    confirm = draw(
        st.sampled_from([None, None, None, "no", "YES", "yes\x00", " yes", "on", "1", "real"] + [None] * 6)
    )
    extra = draw(st.lists(st.tuples(hostile_text(20), hostile_text(40)), max_size=1))
    encoding = draw(form_encoding())

    def build(ctx: Context) -> Request:
        fields: list[tuple[str, str]] = []
        if verb == "status":
            fields.append(("status", status))
        elif verb == "topics":
            fields.append(("topics", topics))
        refusal = verb == "erase" and confirm != "real"
        if verb == "erase" and confirm is not None:
            fields.append(("confirm", "yes" if confirm == "real" else confirm))
        target = f"/console/subscribers/{segment(ctx)}/{_segment(verb)}"
        request = console_request(ctx, who, "POST", target, text_parts(fields + extra), encoding)
        return dataclasses.replace(request, must_refuse=True) if refusal else request

    return build


def _robot_address(channel: str, pick: int) -> str:
    key = ROBOT_KEYS[pick % 2]
    if channel == "wecom":
        return key if pick % 3 else f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={key}"
    return key if pick % 3 else f"https://open.feishu.cn/open-apis/bot/v2/hook/{key}"


CSV_HEADERS = [
    "channel,address,topics",
    "channel,address,topics",
    "address,channel",
    "Channel, Address ,TOPICS,secret",
    "channel,address,topics,status,created_at,confirmed_at,left_at",
]
WRONG_CSV_HEADERS = ["email,name", "", "channel;address;topics", '"channel,address', "\x00", "channel"]


@st.composite
def subscriber_csv(draw: st.DrawFn) -> bytes:
    """A subscriber CSV: near-valid rows built from each channel's address rule, with bad rows among them,
    a header right or wrong, in UTF-8 (with or without a BOM) or another encoding, or huge."""
    header = draw(
        usually(st.sampled_from(CSV_HEADERS), st.sampled_from(WRONG_CSV_HEADERS) | hostile_text(40))
    )
    rows = draw(
        st.lists(
            st.tuples(
                usually(st.sampled_from(CONSOLE_CHANNELS), channel_names()),
                st.sampled_from(["own", "own", "own", "other", "hostile", "empty"]),
                st.integers(0, 10**9),
                EMAILS,
                usually(st.sampled_from(["", "量化", "量化;剪枝", "NPU"]), hostile_text(60)),
                st.sampled_from(["", "", "active", "pending", "unsubscribed", "ACTIVE", "weird"]),
                hostile_text(40),
            ),
            max_size=30,
        )
    )
    breakage = draw(
        usually(
            st.sampled_from(["", "", "bom", "crlf"]),
            st.sampled_from(
                [
                    "utf-16",
                    "gbk",
                    "latin-1",
                    "bad-bytes",
                    "nul",
                    "quote",
                    "columns",
                    "huge-rows",
                    "over-cap",
                    "binary",
                    "empty",
                ]
            ),
        )
    )
    junk = draw(random_bytes(300))
    columns = [name.strip().lower() for name in header.split(",")]
    lines = [header]
    for channel, how, number, email, topics, status, hostile in rows:
        addresses = {
            "email": email,
            "telegram": str(100_000 + number % 10**6) if number % 5 else str(-1001234567890 - number % 100),
            "wechat": f"oFuzzImport{number:017d}"[:28],
            "wecom": _robot_address("wecom", number),
            "feishu": _robot_address("feishu", number),
        }
        own = addresses.get(channel, hostile)
        address = {
            "own": own,
            "other": list(addresses.values())[number % len(addresses)],
            "hostile": hostile,
            "empty": "",
        }[how]
        cells = {"channel": channel, "address": address, "topics": topics, "status": status, "secret": ""}
        record = [cells.get(name, "") for name in columns]
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(record)
        lines.append(out.getvalue())
    if breakage == "quote":
        lines.append('email,"unterminated@example.com')
    if breakage == "columns":
        lines.append("email,a@example.com,量化,extra,more,cells,than,the,header")
    if breakage == "huge-rows":  # many rows, within MAX_CSV_BYTES: the import's batches
        lines += [f"email,bulk{number}@example.com,量化" for number in range(6000)]
    eol = "\r\n" if breakage == "crlf" else "\n"
    text = eol.join(lines) + eol
    data = text.encode("utf-8", "surrogateescape")
    if breakage == "bom":
        return b"\xef\xbb\xbf" + data
    if breakage in ("utf-16", "gbk", "latin-1"):
        return text.encode(breakage, "replace")
    if breakage == "bad-bytes":
        return data[: len(data) // 2] + b"\xff\xfe\xc0\xaf\xed\xa0\x80" + data[len(data) // 2 :]
    if breakage == "nul":
        return data.replace(b",", b"\x00,", 3)
    if breakage == "over-cap":  # beyond the upload's 640 KiB, within the 1 MiB request cap
        return data + b"email,pad@example.com," + b"a" * (700 * 1024) + b"\n"
    if breakage == "binary":
        return junk
    if breakage == "empty":
        return b""
    return data


def import_tag(editor: str, data: bytes) -> str:
    """The HMAC the import's preview puts beside the file (bot/console/subscriber_files.py _tag)."""
    key = hmac.new(SECRET_KEY.encode(), b"jianbao console subscriber import", hashlib.sha256).digest()
    return hmac.new(key, editor.encode() + b"\n" + data, hashlib.sha256).hexdigest()


TAMPERINGS = [
    "tag-off",
    "tag-upper",
    "tag-other-editor",
    "tag-missing",
    "tag-empty",
    "payload-changed",
    "payload-appended",
    "payload-not-base64",
    "payload-urlsafe",
    "payload-missing",
    "payload-whitespace",
]


@st.composite
def console_subscriber_import(draw: st.DrawFn) -> Recipe:
    """GET/POST /console/subscribers/import: the form; uploads of near-valid, broken, wrongly encoded and
    huge CSVs (the preview stores nothing); and the confirm step, rarely with the preview's own field and
    tag (a real import), else tampered with (must be refused, storing nothing)."""
    who = draw(credentials())
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST"]))
    data = draw(subscriber_csv())
    step = draw(
        usually(
            st.sampled_from(["upload", "upload", "confirm-tampered"]),
            st.sampled_from(["confirm", "no-file", "both"]),
        )
    )
    tampering = draw(st.sampled_from(TAMPERINGS))
    flip = draw(st.integers(0, 2**32))
    filename = draw(
        usually(
            st.just("subscribers.csv"),
            st.sampled_from(["", "../../x.csv", "a\x00.csv", "量化.csv"]) | hostile_text(40),
        )
    )
    encoding = draw(usually(st.just(("multipart", "")), form_encoding()))

    def build(ctx: Context) -> Request:
        if method == "GET":
            return console_request(ctx, who, "GET", "/console/subscribers/import")
        fields: list[Part] = []
        refusal = False
        if step in ("upload", "both"):
            fields.append(("file", data, filename))
        if step in ("confirm", "confirm-tampered", "both"):
            good_payload = base64.b64encode(data).decode()
            good_tag = import_tag(EDITOR, data)
            payload: str | None = good_payload
            tag: str | None = good_tag
            if step == "confirm-tampered":
                refusal = True
                changed = bytes([data[0] ^ (1 + flip % 255)]) + data[1:] if data else b"x"
                cut = flip % (len(good_payload) + 1)
                if tampering == "tag-off":
                    tag = _mutated(good_tag, flip)
                    refusal = tag != good_tag
                elif tampering == "tag-upper":
                    tag = good_tag.upper()
                    refusal = tag != good_tag
                elif tampering == "tag-other-editor":
                    tag = import_tag(SIGN_IN_EDITOR, data)
                elif tampering == "tag-missing":
                    tag = None
                elif tampering == "tag-empty":
                    tag = ""
                elif tampering == "payload-changed":
                    payload = base64.b64encode(changed).decode()
                elif tampering == "payload-appended":
                    payload = base64.b64encode(data + b"\nemail,extra@example.com,\n").decode()
                elif tampering == "payload-not-base64":
                    payload = good_payload[:cut] + "!*" + good_payload[cut:]
                elif tampering == "payload-urlsafe":
                    payload = base64.urlsafe_b64encode(b"\xfb\xff" + data).decode()
                elif tampering == "payload-missing":
                    payload = None
                elif tampering == "payload-whitespace":
                    payload = " " + good_payload + "\n"
            fields.append(("confirm", b"1", None))
            if payload is not None:
                fields.append(("payload", payload.encode(), None))
            if tag is not None:
                fields.append(("tag", tag.encode(), None))
        request = console_request(ctx, who, "POST", "/console/subscribers/import", fields, encoding)
        return dataclasses.replace(request, must_refuse=True) if refusal else request

    return build


@st.composite
def console_subscriber_files(draw: st.DrawFn) -> Recipe:
    """GET /console/subscribers/export.csv?channel&status&topic (an accepted export is audited) and
    GET /console/growth?days= (in range, out of it, not numbers)."""
    who = draw(credentials())
    page = draw(st.sampled_from(["export", "growth", "growth"]))
    channel = draw(st.none() | channel_names())
    status = draw(
        st.none()
        | usually(st.sampled_from(STATUS_VALUES), st.sampled_from(["ACTIVE", ""]) | hostile_text(20))
    )
    topic = draw(
        st.none()
        | usually(
            st.sampled_from(["量化", "NPU", ""]), hostile_text(60) | st.just("x" * 40) | st.just("a\tb")
        )
    )
    days = draw(
        st.lists(
            usually(
                st.integers(1, 366).map(str),
                huge_numbers()
                | hostile_text(10)
                | st.sampled_from(["0", "367", "-1", "٣٠", "30 ", "1e2", ""]),
            ),
            max_size=2,
        )
    )
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD"]))

    def build(ctx: Context) -> Request:
        if page == "growth":
            return console_request(
                ctx, who, method, with_query("/console/growth", [("days", d) for d in days])
            )
        given = {"channel": channel, "status": status, "topic": topic}
        pairs = [(name, value) for name, value in given.items() if value is not None]
        return console_request(ctx, who, method, with_query("/console/subscribers/export.csv", pairs))

    return build


# --- routes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    what: str
    strategy: Callable[[], st.SearchStrategy[Recipe]]
    plain_mode: bool = False  # fuzzed against a restart of the service without the EncodingAESKey


ROUTES = [
    Route(
        "wechat-verify",
        "GET /wechat (server verification)",
        lambda: st.one_of(wechat_verify(), wechat_verify(), garbage_for("/wechat", ["GET"])),
    ),
    Route(
        "wechat-push",
        "POST /wechat, plain pushes",
        lambda: st.one_of(wechat_push(), wechat_push(), wechat_push(), garbage_for("/wechat", ["POST"])),
    ),
    Route(
        "wechat-push-aes",
        "POST /wechat, safe mode (AES)",
        lambda: st.one_of(wechat_push_aes(), wechat_push_aes(), wechat_push_aes(), wechat_push()),
    ),
    Route(
        "telegram",
        "POST /telegram",
        lambda: st.one_of(telegram(), telegram(), telegram(), garbage_for("/telegram", ["POST"])),
    ),
    Route(
        "subscribe",
        "POST /subscribe",
        lambda: st.one_of(subscribe(), subscribe(), subscribe(), garbage_for("/subscribe", ["POST"])),
    ),
    Route(
        "confirm-get",
        "GET /confirm/{token} (the page)",
        lambda: token_route("/confirm", ["GET", "GET", "HEAD"], lambda ctx: ctx.confirm_tokens),
    ),
    Route(
        "confirm-post",
        "POST /confirm/{token} (its button)",
        lambda: token_route("/confirm", ["POST"], lambda ctx: ctx.confirm_tokens, bodies=True),
    ),
    Route(
        "unsubscribe-get",
        "GET /unsubscribe/{token}",
        lambda: token_route("/unsubscribe", ["GET", "GET", "HEAD"], lambda ctx: ctx.unsubscribe_tokens),
    ),
    Route(
        "unsubscribe-post",
        "POST /unsubscribe/{token}",
        lambda: token_route("/unsubscribe", ["POST"], lambda ctx: ctx.unsubscribe_tokens, bodies=True),
    ),
    Route(
        "preferences-get",
        "GET /preferences/{token} (the reader's page)",
        lambda: token_route("/preferences", ["GET", "GET", "HEAD"], lambda ctx: ctx.preferences_tokens),
    ),
    Route(
        "preferences-post",
        "POST /preferences/{token} (its form, hostile bodies, no CSRF pair)",
        lambda: token_route(
            "/preferences", ["POST"], lambda ctx: ctx.preferences_tokens, bodies=True, refused=True
        ),
    ),
    Route(
        "redirect",
        "GET /r/{token}, with and without a reader id (?s=)",
        lambda: st.one_of(
            token_route("/r", ["GET", "GET", "HEAD"], lambda ctx: ctx.link_tokens, settle=True),
            redirect_reader(),
        ),
    ),
    Route(
        "search",
        "GET /search",
        lambda: st.one_of(search(), search(), search(), garbage_for("/search", ["GET"])),
    ),
    Route("issues", "GET /issues", lambda: static_page("/issues")),
    Route(
        "git-hook",
        "POST /hooks/git",
        lambda: st.one_of(git_push(), git_push(), git_push(), garbage_for("/hooks/git", ["POST"])),
    ),
    Route(
        "issue-page",
        "GET /issues/{date}",
        lambda: st.one_of(
            issue_page(), issue_page(), issue_page(), garbage_for("/issues/2020-07-02", ["GET"])
        ),
    ),
    Route("feed", "GET /feed.xml", lambda: static_page("/feed.xml")),
    Route("healthz", "GET /healthz", lambda: static_page("/healthz")),
    Route("readyz", "GET /readyz", lambda: static_page("/readyz")),
    Route(
        "api",
        "/api/* (admin API)",
        lambda: st.one_of(
            admin(),
            admin(),
            admin(),
            admin(),
            admin_raw(),
            from_intruders(garbage_for("/api/status", ["GET"])),
        ),
    ),
    Route(
        "console-sign-in",
        "GET/POST /console/sign-in, POST /console/sign-out",
        lambda: st.one_of(
            console_sign_in(),
            console_sign_in(),
            console_sign_in(),
            console_sign_in(),
            console_sign_out(),
            console_sign_in_page(),
            garbage_for("/console/sign-in", ["POST"]),
        ),
    ),
    Route(
        "console",
        "/console/* signed in (issues, previews, test sends, broadcasts, audit, figures, subscriber desk)",
        lambda: st.one_of(
            console_import(),
            console_import(),
            console_issue(),
            console_frame(),
            console_test_send(),
            console_test_send(),
            console_broadcast(),
            console_broadcast(),
            console_page(),
            console_steer(),
            console_steer(),
            console_stats(),
            console_fix_link(),
            console_fix_link(),
            console_compare(),
            console_subscriber_search(),
            console_subscriber(),
            console_subscriber_change(),
            console_subscriber_change(),
            console_subscriber_import(),
            console_subscriber_import(),
            console_subscriber_files(),
            garbage_for("/console/issues/new", ["POST"]),
            garbage_for("/console/subscribers/import", ["POST"]),
        ),
    ),
    Route(
        "wechat-plain-mode",
        "GET/POST /wechat, service without EncodingAESKey",
        lambda: st.one_of(wechat_push(), wechat_push(), wechat_push_aes(), wechat_verify()),
        plain_mode=True,
    ),
]


# --- processes -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def fake(platform: str, *options: str) -> Iterator[str]:
    """`python -m tests.fakes.serve PLATFORM` in its own process; yields its URL."""
    process = subprocess.Popen(
        [str(PYTHON), "-m", "tests.fakes.serve", platform, "--port", "0", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("ready "):
            raise SystemExit(f"the fake {platform} did not start: {line!r}")
        yield line.split()[1]
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int, limit: int = 20_000) -> str:
        with self.log.open("rb") as stream:
            stream.seek(offset)
            return stream.read(limit).decode("utf-8", "replace")


def start_server(env: dict[str, str], cwd: Path, log: Path) -> Server:
    port = free_port()
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [str(BIN / "jianbao"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"jianbao serve exited {process.returncode} at start; see {log}")
        health = healthz_sync(server)
        if health is not None and health.get("channels", {}).get("telegram") == "on":
            return server
        time.sleep(0.3)
    stop_process(process)
    raise SystemExit(
        f"jianbao serve was not healthy with every channel on within {SERVER_START_SECONDS:.0f} s; see {log}"
    )


def healthz_sync(server: Server) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{server.base}/healthz", timeout=HEALTH_TIMEOUT_SECONDS) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError):
        return None


def csrf_pair(server: Server, path: str) -> tuple[str, str, str]:
    """A form's CSRF cookie (name, value) and hidden field, as the page at `path` hands them out (an issue
    page's sign-up form, the console's sign-in form)."""
    with urllib.request.urlopen(f"{server.base}{path}", timeout=HEALTH_TIMEOUT_SECONDS) as response:
        page = response.read().decode("utf-8", "replace")
        cookies = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    hidden = re.search(r'name="csrf_token" value="([^"]*)"', page)
    cookie = next((morsel for name, morsel in cookies.items() if "csrf" in name), None)
    if hidden is None or cookie is None:
        print(f"note: {path} offers no CSRF pair; its form is posted without one")
        return ("", "", "")
    return cookie.key, cookie.value, hidden.group(1)


def add_editors(env: dict[str, str], cwd: Path) -> None:
    """The console's editors, through `jianbao editors add` as an operator adds them (in parallel: each
    is a process start and an argon2 hash)."""
    processes = [
        subprocess.Popen(
            [str(BIN / "jianbao"), "editors", "add", name],
            cwd=cwd,
            env=env | {"JIANBAO_EDITOR_PASSWORD": EDITOR_PASSWORD},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in (EDITOR, SIGN_IN_EDITOR, GUARDED_EDITOR)
    ]
    for process in processes:
        _, error = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"jianbao editors add failed: {error.strip()}")


def signed_in_session(server: Server, csrf: tuple[str, str, str], name: str) -> str:
    """The session cookie of a real sign-in through the console's form, as a browser makes it."""
    cookie_name, cookie_value, field = csrf
    body = urlencode({"csrf_token": field, "name": name, "password": EDITOR_PASSWORD})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"{cookie_name}={cookie_value}"}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HEALTH_TIMEOUT_SECONDS)
    try:
        connection.request("POST", "/console/sign-in", body, headers)
        response = connection.getresponse()
        response.read()
        cookies = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    finally:
        connection.close()
    if response.status != 303 or SESSION_COOKIE not in cookies:
        raise SystemExit(f"signing in to the console as {name} failed: {response.status}")
    return cookies[SESSION_COOKIE].value


@contextlib.contextmanager
def robot_fakes() -> Iterator[dict[str, str]]:
    """The WeCom and Feishu robot fakes, knowing ROBOT_KEYS, on an event loop in a thread of their own
    (tests.fakes.serve does not run them); yields their API roots. Without them the console's test sends
    to a group robot would go to the real platforms."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> dict[str, str]:
        wecom = await stack.enter_async_context(running_fake_wecom(*ROBOT_KEYS))
        feishu = await stack.enter_async_context(running_fake_feishu())
        for key in ROBOT_KEYS:
            feishu.add_robot(key)
        return {"wecom": wecom.url, "feishu": feishu.url}

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result()
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def alive(server: Server) -> bool:
    return server.process.poll() is None and healthz_sync(server) is not None


def service_env(database_url: str, fakes: dict[str, str], *, safe_mode: bool) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JIANBAO_")}
    env |= {
        "JIANBAO_DATABASE_URL": database_url,
        "JIANBAO_PUBLIC_URL": PUBLIC_URL,
        "JIANBAO_SECRET_KEY": SECRET_KEY,
        "JIANBAO_TRACK_LINKS": "true",
        "JIANBAO_ADMIN_TOKEN": ADMIN_TOKEN,
        "JIANBAO_WECHAT_TOKEN": WECHAT_TOKEN,
        "JIANBAO_WECHAT_AES_KEY": AES_KEY if safe_mode else "",
        "JIANBAO_WECHAT_APPID": APPID,
        "JIANBAO_WECHAT_SECRET": SECRET,
        "JIANBAO_WECHAT_API_URL": fakes["wechat"],
        "JIANBAO_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "JIANBAO_TELEGRAM_SECRET": TELEGRAM_SECRET,
        "JIANBAO_TELEGRAM_API_URL": fakes["telegram"],
        "JIANBAO_SMTP_URL": fakes["smtp"],
        "JIANBAO_WECOM_API_URL": fakes["wecom"],
        "JIANBAO_FEISHU_API_URL": fakes["feishu"],
        # The broadcast worker stays off: rows change only through requests, so a change is attributable.
        "JIANBAO_SERVE_WORKER": "off",
        # Sign-up caps high enough that sign-ups reach the form's parsing and storage, not only the cap.
        "JIANBAO_SIGNUP_MAILS_PER_CLIENT": "1000000",
        "JIANBAO_SIGNUP_MAILS_PER_HOUR": "1000000",
        "PTB_TIMEDELTA": "1",
        # Clicks per reader: tracked links take a signed `s`, and the desk shows a subscriber's clicks.
        "JIANBAO_TRACK_SUBSCRIBERS": "true",
    }
    return env


# --- the database ---------------------------------------------------------------------------------------


Snapshot = dict[str, tuple[int, str]]  # table -> (rows, digest of its compared columns)


def compared_columns(table: str, columns: list[str]) -> list[str]:
    """The columns of `table` whose content is compared: its fingerprint, or all but deferred ones."""
    if table in FINGERPRINT_COLUMNS:
        return [name for name in columns if name in FINGERPRINT_COLUMNS[table]]
    return [name for name in columns if name not in DEFERRED_COLUMNS.get(table, ())]


class Store(Protocol):
    async def snapshot(self) -> Snapshot: ...

    async def close(self) -> None: ...


class SqliteStore:
    """Read-only view of the service's SQLite file. `PRAGMA data_version` changes only when another
    connection commits, so an unchanged database costs one PRAGMA and no table is read."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._version: int | None = None
        self._last: Snapshot = {}

    async def snapshot(self) -> Snapshot:
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return self._last
        tables = [
            row[0]
            for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        snapshot: Snapshot = {}
        for table in tables:
            count = self._db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            hasher = hashlib.sha256()
            info = self._db.execute(f'PRAGMA table_info("{table}")').fetchall()
            columns = ", ".join(
                f'"{name}"' for name in compared_columns(table, [column[1] for column in info])
            )
            for row in self._db.execute(f'SELECT {columns} FROM "{table}" ORDER BY rowid'):
                hasher.update(repr(row).encode())
            snapshot[table] = (count, hasher.hexdigest())
        self._version, self._last = version, snapshot
        return snapshot

    async def close(self) -> None:
        self._db.close()


class PostgresStore:
    """The same view of a PostgreSQL database; it has no data_version, so every snapshot reads (the
    tables are hashed on the server)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._db = connection

    async def snapshot(self) -> Snapshot:
        tables = [
            row[0]
            for row in await self._db.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
        ]
        snapshot: Snapshot = {}
        for table in tables:
            count = await self._db.fetchval(f'SELECT count(*) FROM "{table}"')
            names = await self._db.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                table,
            )
            columns = ", ".join(f'"{name}"' for name in compared_columns(table, [row[0] for row in names]))
            digest = await self._db.fetchval(
                f"SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                f'FROM (SELECT {columns} FROM "{table}") t'
            )
            snapshot[table] = (count, digest)
        return snapshot

    async def close(self) -> None:
        await self._db.close()


def import_demo(env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [str(BIN / "jianbao"), "import", "--demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"jianbao import --demo failed: {done.stderr.strip()}")


async def seed_database(database_url: str) -> dict[str, Any]:
    """Subscribers of every channel and state, tracking links, and the tokens to reach them."""
    now = dt.datetime.now(dt.UTC)
    tokens = SubscriberTokens(SECRET_KEY)
    async with Database(database_url) as database:
        subscribers = SubscriberStore(database)
        pending, active = [], []
        for number in range(20):
            subscriber, _ = await subscribers.subscribe(
                "email", f"pending{number}@example.com", confirmed=False
            )
            pending.append(subscriber)
            subscriber, _ = await subscribers.subscribe(
                "email", f"reader{number}@example.com", topics=["量化"] if number % 2 else []
            )
            active.append(subscriber)
        openids = [f"oFuzzReader{number:017d}" for number in range(10)]
        chat_ids = [100_000 + number for number in range(10)] + [-1001234567890]
        for openid in openids[:5]:
            await subscribers.subscribe("wechat", openid)
        for chat in chat_ids[:5]:
            await subscribers.subscribe("telegram", str(chat))
        links = LinkStore(database)
        link_urls = [
            "https://example.com/a",
            "https://example.com/量化?q=1&r=2#x",
            "http://example.com/with space",
            "https://example.com/\r\nSet-Cookie: evil=1",
            "https://example.com/" + "a" * 5000,
            "HTTPS://EXAMPLE.COM/%ZZ%00",
        ]
        link_tokens = [
            f"fuzzlink{number:02d}".replace("0", "a").replace("1", "b") for number in range(len(link_urls))
        ]
        await links.remember("email", dt.date(2020, 7, 2), zip(link_tokens, link_urls, strict=True))
        desk = await seed_desk(database, subscribers, now)
    week_ago = now - dt.timedelta(days=8)
    return {
        "confirm_tokens": tuple(tokens.make(Purpose.CONFIRM, s, now) for s in pending),
        "unsubscribe_tokens": tuple(tokens.make(Purpose.UNSUBSCRIBE, s, now) for s in active + pending[:5]),
        "preferences_tokens": tuple(tokens.make(Purpose.PREFERENCES, s, now) for s in active + pending[:3])
        + tuple(tokens.make(Purpose.UNSUBSCRIBE, s, now) for s in active[:2]),
        "stale_tokens": tuple(
            [tokens.make(Purpose.CONFIRM, s, week_ago) for s in pending[:5]]
            + [tokens.make(Purpose.UNSUBSCRIBE, s, now) for s in pending[5:8]]
            + [tokens.make(Purpose.CONFIRM, s, now + dt.timedelta(days=1)) for s in pending[8:10]]
        ),
        "link_tokens": tuple(link_tokens),
        "openids": tuple(openids),
        "chat_ids": tuple(chat_ids),
        "fix_urls": tuple(desk["fix_urls"] + link_urls),
        "subscriber_ids": tuple(s.id for s in pending + active) + desk["ids"],
        "desk_ids": desk["ids"],
        "reader_ids": tuple(ReaderIds(SECRET_KEY).make(s.id) for s in active + pending[:3]),
        "stale_reader_ids": tuple(ReaderIds(SECRET_KEY).make(900_000 + number) for number in range(3)),
    }


FIXED_ISSUE = dt.date(2020, 7, 2)
DESK_SUBSCRIBERS = 80


async def seed_desk(database: Database, subscribers: SubscriberStore, now: dt.datetime) -> dict[str, Any]:
    """What the console's figures and subscriber desk work on: DESK_SUBSCRIBERS subscribers of their own
    (the desk's status and topic changes and its rare real erasure take them, not the readers other
    routes' tokens name), the broadcast of FIXED_ISSUE on email and Telegram with its tracked links and a
    few clicks (id 1, running), and another issue's broadcast cancelled (id 2, settled: its figures are
    kept in broadcast_tally on first view)."""
    ids = []
    for number in range(DESK_SUBSCRIBERS):
        topics = [["量化"], ["剪枝", "NPU"], []][number % 3]
        subscriber, _ = await subscribers.subscribe("email", f"desk{number}@example.com", topics=topics)
        ids.append(subscriber.id)
    issues = IssueStore(database)
    issue = await issues.get(FIXED_ISSUE)
    urls = (
        list(dict.fromkeys(item.url for section in issue.sections for item in section.items if item.url))[:20]
        if issue is not None
        else []
    )
    links = LinkStore(database)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens: dict[str, list[str]] = {}
    for channel in ("email", "telegram"):
        pairs = [
            (f"fuzzfix{channel[0]}{letters[n // 26]}{letters[n % 26]}", url) for n, url in enumerate(urls)
        ]
        await links.remember(channel, FIXED_ISSUE, pairs)
        tokens[channel] = [token for token, _ in pairs]
    broadcasts = BroadcastStore(database)
    await broadcasts.start(FIXED_ISSUE, ["email", "telegram"])
    other = next(summary.date for summary in await issues.list() if summary.date != FIXED_ISSUE)
    cancelled = await broadcasts.start(other, ["email"])
    await broadcasts.cancel(cancelled.broadcast.id)
    events = [
        ClickEvent(
            token,
            now - dt.timedelta(minutes=number * 7),
            hashlib.sha256(f"clicker{number}".encode()).hexdigest()[:32],
            subscriber_id=ids[number % len(ids)] if number % 2 else None,
        )
        for number, token in enumerate(tokens["email"] * 3 + tokens["telegram"])
    ]
    await ClickStore(database).record(events)
    return {"fix_urls": urls, "ids": tuple(ids)}


def issue_dates(database_url: str) -> tuple[str, ...]:
    async def read() -> tuple[str, ...]:
        async with Database(database_url) as database:
            return tuple(summary.date.isoformat() for summary in await IssueStore(database).list())

    return asyncio.run(read())


@contextlib.asynccontextmanager
async def postgres_database(base: str) -> Any:
    server = make_url(base).set(drivername="postgresql")
    name = f"jianbao_fuzz_{uuid.uuid4().hex[:10]}"
    admin_connection = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await admin_connection.execute(f"CREATE DATABASE {name}")
    finally:
        await admin_connection.close()
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        admin_connection = await asyncpg.connect(server.render_as_string(hide_password=False))
        try:
            await admin_connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin_connection.close()


# --- sending and judging --------------------------------------------------------------------------------


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
OUR_CODE = re.compile(r'File "[^"]*/(bot|channels|storage|content)/')


@dataclass
class Failure:
    route: str
    status: int
    request: str
    body: str
    log: str

    @property
    def key(self) -> tuple[str, int, str]:
        """What makes two 5xx the same bug: route, status, the exception's type and where it was raised:
        the innermost frame of our own code, and the innermost frame of all."""
        lines = [line.strip() for line in self.log.splitlines() if line.strip()]
        exception = next((line for line in reversed(lines) if EXCEPTION_LINE.match(line)), "no traceback")
        frames = [line for line in lines if line.startswith('File "')]
        ours = [line for line in frames if OUR_CODE.search(line)]
        where = " … ".join(dict.fromkeys(frame for frame in (ours[-1:] + frames[-1:])))
        return self.route, self.status, f"{exception.split(':')[0]} @ {where}"


@dataclass
class RouteResult:
    route: str
    sent: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    stored_by_refused: int = 0
    changed_by_refused: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the route ended before --per-route requests, if it did
    examples: list[str] = field(default_factory=list)  # refused requests that stored or changed rows
    no_answer: Counter[str] = field(default_factory=Counter)  # why there was no HTTP answer
    wrongly_accepted: int = 0  # requests that must be refused (Request.must_refuse), accepted
    accepted_examples: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return self.classes["5xx"]


class Stop(Exception):
    """Ends a route's hypothesis run early (time limit, dead server)."""


def accepted(method: str, status: int) -> bool:
    """Whether `status` takes the request: a 2xx, or a 3xx to anything but a page view (a GET without a
    session is sent to the sign-in page with a 303, which refuses it)."""
    return status < 300 or (status < 400 and method not in ("GET", "HEAD"))


class Fuzzer:
    """Sends recipes one at a time from an event loop in a thread of its own, and judges each answer."""

    def __init__(
        self, server: Server, store_factory: Callable[[], Coroutine[Any, Any, Store]], ctx: Context
    ) -> None:
        self.server = server
        self.ctx = ctx
        self.failures: list[Failure] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._relays: list[asyncio.Server] = []
        self._store: Store = self.call(store_factory())
        self._snapshot: Snapshot = self.call(self._store.snapshot())

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def close(self) -> None:
        async def close_all() -> None:
            for session in self._sessions.values():
                await session.close()
            for relay in self._relays:
                relay.close()
            await self._store.close()

        self.call(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def relay(self) -> int:
        """A loopback relay to the server that gives every connection through it a client address of
        its own; its port. See run_schemathesis for why."""
        addresses = (f"127.2.{number // 250 % 250}.{number % 250 + 1}" for number in itertools.count())

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError):
                if writer.can_write_eof():
                    writer.write_eof()

        async def connection(
            client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
        ) -> None:
            address = next(addresses)
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", self.server.port, local_addr=(address, 0)
                )
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(pump(client_reader, writer), pump(reader, client_writer))
            for stream in (writer, client_writer):
                stream.close()

        async def start() -> int:
            relay = await asyncio.start_server(connection, "127.0.0.1", 0)
            self._relays.append(relay)
            return int(relay.sockets[0].getsockname()[1])

        return self.call(start())

    def use(self, server: Server) -> None:
        """Go on against a restarted server (the same database, which its start may have changed:
        unconfirmed sign-ups past their link's life are purged)."""
        self.server = server
        self.call(self._reset_sessions())
        self._snapshot = self.call(self._store.snapshot())

    async def _reset_sessions(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def run(self, route: Route, count: int, seed_value: int, seconds: float) -> RouteResult:
        result = RouteResult(route.name)
        started = time.monotonic()

        @settings(
            max_examples=count,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            report_multiple_bugs=False,
            print_blob=False,
        )
        @seed(seed_value)
        @given(route.strategy())
        def fuzz(recipe: Recipe) -> None:
            if result.stopped:
                raise Stop()
            if time.monotonic() - started > seconds:
                result.stopped = f"time limit {seconds:.0f} s"
                raise Stop()
            self.call(self._judge(route.name, recipe, result))
            if result.stopped:
                raise Stop()

        with contextlib.suppress(Stop):
            fuzz()
        result.seconds = time.monotonic() - started
        return result

    async def _judge(self, route: str, recipe: Recipe, result: RouteResult) -> None:
        ctx = dataclasses.replace(self.ctx, now=time.time())
        request = recipe(ctx)
        log_offset = self.server.log_size()
        status, body = await self._send(request)
        result.sent += 1
        result.classes["none" if status is None else f"{status // 100}xx"] += 1
        if status is None:
            result.no_answer[f"{request.method} {body.split(':')[0][:40] or 'closed'}"] += 1
        if status is not None and status >= 500:
            await asyncio.sleep(0.05)  # let the server's log line reach the file
            self.failures.append(
                Failure(route, status, request.summary(), body[:300], self.server.log_since(log_offset))
            )
        if request.must_refuse and status is not None and accepted(request.method, status):
            result.wrongly_accepted += 1
            if len(result.accepted_examples) < 5:
                result.accepted_examples.append(f"{status}: {request.summary(160)}")
        snapshot = await self._store.snapshot()
        if request.settle and status is not None and status < 400:  # a 302 to the link
            snapshot = await self._settled(snapshot)
        # A 5xx refuses too, and must not leave half a record behind.
        refused = status is None or status >= 400 or request.must_refuse
        if refused and snapshot != self._snapshot:
            self._blame(snapshot, request, status, result)
        self._snapshot = snapshot
        if status is None and not await asyncio.to_thread(alive, self.server):
            result.stopped = "the server died"

    async def _settled(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot once the click an accepted /r/{token} noted is recorded (bot/click_buffer.py
        writes each second), or after SETTLE_SECONDS: its rows are then not blamed on the next request."""
        deadline = time.monotonic() + SETTLE_SECONDS
        clicks = self._snapshot.get("click", (0, ""))[0]
        while snapshot.get("click", (0, ""))[0] == clicks and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            snapshot = await self._store.snapshot()
        return snapshot

    def _blame(self, snapshot: Snapshot, request: Request, status: int | None, result: RouteResult) -> None:
        before = self._snapshot
        stored = {table: snapshot[table][0] - before.get(table, (0, ""))[0] for table in snapshot}
        grown = {table: rows for table, rows in stored.items() if rows}
        changed = [
            table
            for table in snapshot
            if table not in grown and snapshot[table][1] != before.get(table, (0, ""))[1]
        ]
        if grown:
            result.stored_by_refused += sum(abs(rows) for rows in grown.values())
        if changed:
            result.changed_by_refused += 1
        if len(result.examples) < 5:
            result.examples.append(f"{status}: {request.summary(160)} -> rows {grown} changed {changed}")

    def _session(self, source: str) -> aiohttp.ClientSession:
        session = self._sessions.get(source)
        if session is None:
            connector = aiohttp.TCPConnector(limit=1, local_addr=(source, 0))
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
                auto_decompress=False,
            )
            self._sessions[source] = session
        return session

    async def _send(self, request: Request) -> tuple[int | None, str]:
        if request.raw is not None:
            return await self._send_raw(request)
        url = URL(self.server.base + request.target, encoded=True)
        try:
            async with self._session(request.source).request(
                request.method,
                url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                skip_auto_headers=["Content-Type"]
                if not any(n.lower() == "content-type" for n, _ in request.headers)
                else [],
            ) as response:
                body = await response.read()
                return response.status, body[:2000].decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            # The server closed the connection (after a 413, a parse error) or never answered.
            return None, f"{type(error).__name__}: {error}"[:300]

    async def _send_raw(self, request: Request) -> tuple[int | None, str]:
        assert request.raw is not None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.server.port, local_addr=(request.source, 0)), 10
            )
        except (OSError, TimeoutError) as error:
            return None, f"connect: {error}"
        try:
            writer.write(request.raw)
            # No half-close: the server takes the end of its input for a client that left, and answers nobody.
            with contextlib.suppress(OSError):
                await writer.drain()
            data = await asyncio.wait_for(reader.read(65536), RAW_TIMEOUT_SECONDS)
        except (OSError, TimeoutError) as error:
            return None, f"{type(error).__name__}: {error}"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
        return (int(match.group(1)) if match else None), data[:2000].decode("utf-8", "replace")


# --- schemathesis ---------------------------------------------------------------------------------------


@dataclass
class SchemathesisResult:
    returncode: int
    summary: str
    output: Path


def run_schemathesis(relay_port: int, examples: int, seed_value: int, folder: Path) -> SchemathesisResult:
    """schemathesis on every admin operation, through the relay (Fuzzer.relay) with `Connection: close`,
    so that each of its requests comes from a client address of its own. Its deliberate wrong-token
    probes would otherwise get its one address throttled (429 for a minute, token unchecked) and leave
    the rest of the run testing the throttle rather than the API; the throttle is fuzzed by the `api`
    route, whose wrong tokens come from a pool of addresses."""
    output, har = folder / "schemathesis.txt", folder / "schemathesis.har"
    command = [
        str(BIN / "schemathesis"),
        "run",
        f"http://127.0.0.1:{relay_port}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--header",
        "Connection: close",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed_value),
        "--workers",
        "1",
        "--request-timeout",
        str(REQUEST_TIMEOUT_SECONDS),
        "--output-truncate",
        "false",
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    env = os.environ | {"NO_COLOR": "1"}
    try:
        done = subprocess.run(
            command,
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCHEMATHESIS_SECONDS + 120,
            check=False,
        )
        text, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        text, code = f"schemathesis did not finish: {error}", 1
    output.write_text(text.replace(ADMIN_TOKEN, "<admin token>"))
    return SchemathesisResult(code, schemathesis_summary(text) + "\n" + har_statuses(har), output)


def schemathesis_summary(text: str) -> str:
    """Its SUMMARY section: operations, phases, failures by check, warnings, test cases."""
    _, found, summary = text.rpartition("SUMMARY")
    lines = [line.strip(" =") for line in summary.splitlines() if line.strip(" =")] if found else []
    return "\n".join(f"  {line}" for line in lines) or "  (no summary printed)"


def har_statuses(har: Path) -> str:
    """The responses schemathesis got, by status, from its HAR record."""
    try:
        entries = json.loads(har.read_text())["log"]["entries"]
    except (OSError, ValueError, KeyError):
        return "  (no HAR record)"
    statuses = Counter(int(entry["response"]["status"]) for entry in entries)
    shown = ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))
    return f"  responses: {sum(statuses.values())} ({shown})"


# --- the run ---------------------------------------------------------------------------------------------


def print_table(results: list[RouteResult]) -> None:
    header = f"{'route':20s} {'sent':>7s} {'2xx':>6s} {'3xx':>5s} {'4xx':>6s} {'5xx':>5s} {'none':>5s}"
    header += f" {'stored*':>8s} {'changed*':>9s} {'seconds':>8s}"
    print(header)
    for result in results:
        c = result.classes
        print(
            f"{result.route:20s} {result.sent:7d} {c['2xx']:6d} {c['3xx']:5d} {c['4xx'] + c['1xx']:6d} "
            f"{c['5xx']:5d} {c['none']:5d} {result.stored_by_refused:8d} {result.changed_by_refused:9d} "
            f"{result.seconds:8.1f}" + (f"  (stopped: {result.stopped})" if result.stopped else "")
        )
    print(
        "stored*: rows stored by refused requests; changed*: refused requests after which a row had changed"
    )
    for result in results:
        if result.no_answer:
            reasons = ", ".join(f"{reason} ×{count}" for reason, count in result.no_answer.most_common(4))
            print(f"  no answer, {result.route}: {reasons}")


def report_failures(failures: list[Failure], folder: Path) -> None:
    distinct: dict[tuple[str, int, str], list[Failure]] = {}
    for failure in failures:
        distinct.setdefault(failure.key, []).append(failure)
    path = folder / "failures.txt"
    with path.open("w") as out:
        for (route, status, where), group in distinct.items():
            first = group[0]
            out.write(
                f"=== {route}: {status} ×{len(group)}  {where}\nrequest: {first.request}\n"
                f"body: {first.body}\nserver log:\n{first.log}\n\n"
            )
    print(f"\n{len(distinct)} distinct 5xx ({len(failures)} responses); details in {path}:")
    for (route, status, where), group in distinct.items():
        print(f"  {route}: {status} ×{len(group)}  {where[:150]}")
        print(f"    e.g. {group[0].request[:200]}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-route", type=int, default=10_000, help="requests per route (default 10000)")
    parser.add_argument(
        "--routes", nargs="+", choices=[route.name for route in ROUTES], help="only these routes"
    )
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        default=None,
        metavar="URL",
        help="run on a new PostgreSQL database on this server",
    )
    parser.add_argument(
        "--schemathesis-examples", type=int, default=100, help="schemathesis cases per operation (0: skip it)"
    )
    parser.add_argument(
        "--route-seconds", type=float, default=DEFAULT_ROUTE_SECONDS, help="time limit of one route"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working folder even when everything passed"
    )
    args = parser.parse_args(argv)
    if args.per_route < 1:
        parser.error("--per-route must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C does, so that the server and the fakes are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    folder = Path(tempfile.mkdtemp(prefix="jianbao-fuzz-"))
    try:
        ok = asyncio.run(fuzz_all(args, folder)) if args.postgres else run_sqlite(args, folder)
    except BaseException:
        print(f"working folder kept: {folder}")
        raise
    if ok and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"working folder kept: {folder}")
    return 0 if ok else 1


def run_sqlite(args: argparse.Namespace, folder: Path) -> bool:
    path = folder / "fuzz.db"
    url = f"sqlite:///{path}"

    async def store() -> Store:
        return SqliteStore(path)

    return fuzz_with(args, folder, url, store)


async def fuzz_all(args: argparse.Namespace, folder: Path) -> bool:
    async with postgres_database(args.postgres) as url:

        async def store() -> Store:
            return PostgresStore(await asyncpg.connect(url))

        return await asyncio.to_thread(fuzz_with, args, folder, url, store)


def fuzz_with(
    args: argparse.Namespace, folder: Path, url: str, store: Callable[[], Coroutine[Any, Any, Store]]
) -> bool:
    routes = [route for route in ROUTES if not args.routes or route.name in args.routes]
    with (
        fake("telegram", "--no-record") as telegram_url,
        fake("wechat") as wechat_url,
        fake("smtp", "--no-record") as smtp_url,
        robot_fakes() as robots,
    ):
        fakes = {"telegram": telegram_url, "wechat": wechat_url, "smtp": smtp_url} | robots
        git_clone, commits = git_repository(folder)
        env = service_env(url, fakes, safe_mode=True) | {
            "JIANBAO_GIT_REPO": str(git_clone),
            "JIANBAO_GIT_WEBHOOK_SECRET": GIT_SECRET,
        }
        import_demo(env, folder)
        add_editors(env, folder)
        seeded = asyncio.run(seed_database(url))
        dates = issue_dates(url)
        print(
            f"fuzzing {len(routes)} routes × {args.per_route:,} requests (seed {args.seed}) "
            "against jianbao serve on "
            f"{'PostgreSQL' if args.postgres else 'SQLite'}: {len(dates)} issues, every channel on"
        )
        server = start_server(env, folder, folder / "server-safe-mode.log")
        console_csrf = csrf_pair(server, "/console/sign-in")
        ctx = Context(
            host=f"127.0.0.1:{server.port}",
            now=time.time(),
            dates=dates,
            csrf=csrf_pair(server, f"/issues/{dates[0]}"),
            commits=commits,
            console_csrf=console_csrf,
            console_session=signed_in_session(server, console_csrf, EDITOR),
            spare_session=signed_in_session(server, console_csrf, EDITOR),
            **seeded,
        )
        fuzzer = Fuzzer(server, store, ctx)
        results: list[RouteResult] = []
        schemathesis: SchemathesisResult | None = None
        server_alive = True
        try:
            for index, route in enumerate(route for route in routes if not route.plain_mode):
                results.append(run_route(fuzzer, route, args, index))
                if not alive(server):
                    server_alive = False
                    break
            if server_alive and args.schemathesis_examples > 0:
                schemathesis = run_schemathesis(fuzzer.relay(), args.schemathesis_examples, args.seed, folder)
                server_alive = alive(server)
            stop_process(server.process)
            plain = [route for route in routes if route.plain_mode]
            if server_alive and plain:
                server = start_server(
                    service_env(url, fakes, safe_mode=False), folder, folder / "server-plain-mode.log"
                )
                fuzzer.use(server)
                for index, route in enumerate(plain, start=len(routes)):
                    results.append(run_route(fuzzer, route, args, index))
                server_alive = alive(server)
                stop_process(server.process)
        finally:
            stop_process(server.process)
            fuzzer.close()
    return report(results, fuzzer.failures, schemathesis, server_alive, folder)


def run_route(fuzzer: Fuzzer, route: Route, args: argparse.Namespace, index: int) -> RouteResult:
    result = fuzzer.run(route, args.per_route, args.seed + index, args.route_seconds)
    print(f"  {route.name}: {result.sent:,} requests in {result.seconds:.0f} s", file=sys.stderr, flush=True)
    return result


def report(
    results: list[RouteResult],
    failures: list[Failure],
    schemathesis: SchemathesisResult | None,
    server_alive: bool,
    folder: Path,
) -> bool:
    print()
    print_table(results)
    for result in results:
        for example in result.examples:
            print(f"  {result.route}: refused request left the database changed: {example}")
        if result.wrongly_accepted:
            print(f"  {result.route}: {result.wrongly_accepted} requests that must be refused were accepted")
        for example in result.accepted_examples:
            print(f"  {result.route}: accepted, yet must be refused: {example}")
    if schemathesis is not None:
        verdict = (
            "passed"
            if schemathesis.returncode == 0
            else f"FAILED (exit {schemathesis.returncode}; output in {schemathesis.output})"
        )
        print(f"\nschemathesis on /api/openapi.json: {verdict}")
        print(schemathesis.summary)
    if failures:
        report_failures(failures, folder)
    print(f"\nserver logs: {', '.join(str(path) for path in sorted(folder.glob('server-*.log')))}")
    print(f"server alive: {'yes' if server_alive else 'no'}")
    server_errors = sum(result.server_errors for result in results)
    stored = sum(result.stored_by_refused for result in results)
    changed = sum(result.changed_by_refused for result in results)
    wrongly_accepted = sum(result.wrongly_accepted for result in results)
    print(
        f"total: {sum(result.sent for result in results):,} requests, {server_errors} 5xx, "
        f"{stored} rows stored and {changed} changed by refused requests, "
        f"{wrongly_accepted} accepted that must be refused"
    )
    schemathesis_ok = schemathesis is None or schemathesis.returncode == 0
    clean = server_errors == 0 and stored == 0 and changed == 0 and wrongly_accepted == 0
    return server_alive and clean and schemathesis_ok


if __name__ == "__main__":
    sys.exit(main())
