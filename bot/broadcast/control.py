"""The editor's operations on broadcasts, shared by `jianbao broadcast ...` and /api/broadcasts.

Every input problem is a BadInput (400) naming it; a missing issue or broadcast is NotFound (404); an
operation that contradicts the broadcast's state (resuming a cancelled one) is Conflict (409).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.broadcast.audience import audience
from bot.rendering import Renderer
from bot.settings import Settings
from channels.registry import ChannelRegistry, channel_registry
from content.errors import BadInput, NotFound
from content.model import Issue
from storage.broadcasts import Broadcast, BroadcastStore, StartReport
from storage.database import Database
from storage.issues import IssueStore


@dataclass(frozen=True, slots=True)
class SendRequest:
    date: dt.date
    channels: tuple[str, ...] = ()  # empty: every registered channel that can send
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


def checked_channels(
    channels: ChannelRegistry, settings: Settings, wanted: tuple[str, ...]
) -> tuple[str, ...]:
    """The channels named (each known and able to send), or, when none is named, every one that can."""
    reasons = channels.off_reasons(settings)
    for name in wanted:
        channels.get(name)  # BadInput naming the known channels
        if reasons[name]:
            raise BadInput(f"{name} cannot send: {reasons[name]}")
    if wanted:
        return tuple(dict.fromkeys(wanted))
    ready = tuple(name for name, reason in reasons.items() if not reason)
    if not ready:
        why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        raise BadInput(f"no channel can send ({why})")
    return ready


class BroadcastControl:
    def __init__(
        self, settings: Settings, database: Database, channels: ChannelRegistry | None = None
    ) -> None:
        self._settings = settings
        self._channels = channels if channels is not None else channel_registry(settings.channel_plugins)
        self._issues = IssueStore(database)
        self.broadcasts = BroadcastStore(database)

    async def send(self, request: SendRequest) -> StartReport | DryRun:
        issue = await self._issue(request.date)
        names = checked_channels(self._channels, self._settings, request.channels)
        now = dt.datetime.now(dt.UTC)
        rule = audience(issue, now, self._channels)
        options = {"wechat_text": True} if request.wechat_text else {}
        if request.dry_run:
            counts = await self.broadcasts.preview(names, audience=rule, kinds=self._rows, options=options)
            return DryRun(request.date, names, counts, self._payload_sizes(issue, names))
        return await self.broadcasts.start(
            request.date, names, audience=rule, kinds=self._rows, start_at=request.at, options=options
        )

    async def audience(
        self, date: dt.date, channels: tuple[str, ...], *, wechat_text: bool = False
    ) -> dict[str, dict[str, int]]:
        """Who would get the issue on each channel: {"pending": n, "skipped": n} per channel (counted in
        SQL, topics and each channel's rules honoured), {"mass": 1} for a mass send."""
        issue = await self._issue(date)
        rule = audience(issue, dt.datetime.now(dt.UTC), self._channels)
        options = {"wechat_text": True} if wechat_text else {}
        return await self.broadcasts.preview(channels, audience=rule, kinds=self._rows, options=options)

    def _rows(self, name: str, options: Mapping[str, Any]) -> tuple[bool, bool]:
        plan = self._channels.get(name).plan(options)
        return plan.direct, plan.mass

    def _payload_sizes(self, issue: Issue, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        renderer = Renderer(self._settings, self._channels)
        return {name: dict(renderer.render(issue, name).sizes) for name in names}

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
