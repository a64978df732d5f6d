"""The editor's operations on broadcasts, shared by `jianbao broadcast ...` and /api/broadcasts.

Every input problem is a BadInput (400) naming it; a missing issue or broadcast is NotFound (404); an
operation that contradicts the broadcast's state (resuming a cancelled one) is Conflict (409).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from bot.broadcast.audience import audience
from bot.rendering import Renderer
from bot.settings import Settings
from channels.base import utf8_bytes
from content.errors import BadInput, NotFound
from content.model import Issue
from storage.broadcasts import Broadcast, BroadcastStore, StartReport
from storage.database import Database
from storage.issues import IssueStore
from storage.subscribers import CHANNELS


@dataclass(frozen=True, slots=True)
class SendRequest:
    date: dt.date
    channels: tuple[str, ...] = ()  # empty: every channel that is configured for sending
    at: dt.datetime | None = None  # None: now
    wechat_text: bool = False  # also customer-service texts to followers inside their 48 h window
    dry_run: bool = False


@dataclass
class DryRun:
    date: dt.date
    channels: tuple[str, ...]
    audience: dict[str, dict[str, int]]
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": True,
            "date": self.date.isoformat(),
            "channels": list(self.channels),
            "audience": self.audience,
            "payloads": self.payloads,
        }


def parse_time(text: str, settings: Settings) -> dt.datetime:
    """An ISO time ("2026-12-01 08:00", "2026-12-01T08:00+08:00"); without a zone it is in
    JIANBAO_TIMEZONE."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"not a time: {text[:40]!r} (use YYYY-MM-DD HH:MM, optionally with +08:00)") from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(settings.timezone))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise BadInput(f"JIANBAO_TIMEZONE {settings.timezone[:40]!r} is not a known time zone") from None
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:59-23:59 is past the last moment a datetime holds, in UTC
        raise BadInput(f"not a time: {text[:40]!r} is out of range") from None


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"not a date: {text[:40]!r} (use YYYY-MM-DD)") from None


def sending_channels(settings: Settings) -> dict[str, str]:
    """channel -> why it cannot send broadcasts ("" when it can)."""
    email = ""
    if not settings.smtp_url:
        email = "JIANBAO_SMTP_URL is not set"
    elif not settings.public_url:
        email = "JIANBAO_PUBLIC_URL is needed for the unsubscribe link in every mail"
    elif not settings.secret_key:
        email = "JIANBAO_SECRET_KEY is needed: unsubscribe links must keep working after a restart"
    wechat = "" if settings.wechat_appid and settings.wechat_secret else "JIANBAO_WECHAT_APPID/SECRET not set"
    return {
        "telegram": "" if settings.telegram_token else "JIANBAO_TELEGRAM_TOKEN is not set",
        "email": email,
        "wechat": wechat,
    }


def checked_channels(settings: Settings, channels: tuple[str, ...]) -> tuple[str, ...]:
    reasons = sending_channels(settings)
    for channel in channels:
        if channel not in CHANNELS:
            raise BadInput(f"unknown channel {channel[:20]!r}: use one of {', '.join(CHANNELS)}")
        if reasons[channel]:
            raise BadInput(f"{channel} cannot send: {reasons[channel]}")
    if channels:
        return tuple(dict.fromkeys(channels))
    ready = tuple(channel for channel in CHANNELS if not reasons[channel])
    if not ready:
        raise BadInput(
            "no channel can send: set JIANBAO_TELEGRAM_TOKEN, JIANBAO_SMTP_URL (with PUBLIC_URL and "
            "SECRET_KEY) or JIANBAO_WECHAT_APPID/SECRET"
        )
    return ready


class BroadcastControl:
    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._issues = IssueStore(database)
        self.broadcasts = BroadcastStore(database)

    async def send(self, request: SendRequest) -> StartReport | DryRun:
        issue = await self._issue(request.date)
        channels = checked_channels(self._settings, request.channels)
        now = dt.datetime.now(dt.UTC)
        rule = audience(issue, now)
        if request.dry_run:
            counts = await self.broadcasts.preview(channels, audience=rule, wechat_text=request.wechat_text)
            return DryRun(request.date, channels, counts, _payload_sizes(issue, channels, self._settings))
        options = {"wechat_text": True} if request.wechat_text else {}
        return await self.broadcasts.start(
            request.date, channels, audience=rule, start_at=request.at, options=options
        )

    async def find(self, reference: str) -> Broadcast:
        """A broadcast by id ("12") or by its issue's date ("2020-07-02")."""
        reference = reference.strip()
        if reference.isdigit() and len(reference) < 10:
            return await self.broadcasts.get(int(reference))
        return await self.broadcasts.for_issue(parse_date(reference))

    async def status(self, broadcast: Broadcast) -> dict[str, object]:
        progress = await self.broadcasts.progress(broadcast.id)
        return broadcast.to_dict() | progress.to_dict()

    async def _issue(self, date: dt.date) -> Issue:
        issue = await self._issues.get(date)
        if issue is None:
            raise NotFound(f"no issue of {date} in the database (import it first)")
        return issue


def _payload_sizes(issue: Issue, channels: tuple[str, ...], settings: Settings) -> dict[str, dict[str, Any]]:
    renderer = Renderer(settings)
    sizes: dict[str, dict[str, Any]] = {}
    if "telegram" in channels:
        telegram = renderer.telegram(issue)
        sizes["telegram"] = {
            "messages": len(telegram.messages),
            "characters": [m.length for m in telegram.messages],
        }
    if "wechat" in channels:
        wechat = renderer.wechat(issue)
        sizes["wechat"] = {"title": wechat.article.title, "text_bytes": utf8_bytes(wechat.text)}
    if "email" in channels:
        email = renderer.email(issue)
        sizes["email"] = {"subject": email.subject, "html_bytes": email.html_worst_bytes}
    return sizes
