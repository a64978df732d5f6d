"""The console's audit trail: who imported, previewed, sent, paused or cancelled what, and when.

Entries are only ever appended. The actor is an editor's name, or what acted on its own ("git push").
The subject names what was acted on ("issue 2026-12-01", "broadcast 7"); texts longer than their columns
are cut, never refused: an audit entry must not be the reason an action fails.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.database import Database
from storage.tables import (
    AUDIT_ACTION_LENGTH,
    AUDIT_ACTOR_LENGTH,
    AUDIT_DETAIL_LENGTH,
    AUDIT_SUBJECT_LENGTH,
    AuditEntryRow,
    core_table,
)

PAGE = 100


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: dt.datetime
    actor: str
    action: str
    subject: str
    detail: str


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issue_subject(date: dt.date | str) -> str:
    return f"issue {date}"


def broadcast_subject(broadcast_id: int) -> str:
    return f"broadcast {broadcast_id}"


def subscriber_subject(subscriber_id: int) -> str:
    """Subscribers are named by id, never by address: an erasure must leave the trail without it."""
    return f"subscriber {subscriber_id}"


async def append_entry(
    connection: AsyncConnection, at: dt.datetime, actor: str, action: str, subject: str, detail: str = ""
) -> None:
    """One entry, in the caller's transaction: for an action whose record must commit with it (an
    erasure is never done unrecorded, nor recorded undone)."""
    await connection.execute(
        insert(core_table(AuditEntryRow)).values(
            at=at,
            actor=actor[:AUDIT_ACTOR_LENGTH],
            action=action[:AUDIT_ACTION_LENGTH],
            subject=subject[:AUDIT_SUBJECT_LENGTH],
            detail=detail[:AUDIT_DETAIL_LENGTH],
        )
    )


class AuditTrail:
    def __init__(self, database: Database, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._database = database
        self._clock = clock

    async def record(self, actor: str, action: str, subject: str, detail: str = "") -> None:
        async with self._database.transaction("write") as connection:
            await append_entry(connection, self._clock(), actor, action, subject, detail)

    async def recent(
        self, limit: int = PAGE, *, before: int | None = None, subjects: Sequence[str] = ()
    ) -> builtins.list[AuditEntry]:
        """Newest first; `before` an entry id for the next page; `subjects` to keep only those."""
        a = core_table(AuditEntryRow)
        query = select(a).order_by(a.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(a.c.id < before)
        if subjects:
            query = query.where(a.c.subject.in_(list(subjects)))
        async with self._database.transaction() as connection:
            rows = (await connection.execute(query)).all()
        return [
            AuditEntry(
                id=row.id,
                at=row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC),
                actor=row.actor,
                action=row.action,
                subject=row.subject,
                detail=row.detail,
            )
            for row in rows
        ]
