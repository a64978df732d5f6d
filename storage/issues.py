"""The store of newsletter issues: save one (idempotently, by date and content hash), read them back."""

from __future__ import annotations

import builtins
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from content.model import Issue
from storage.database import Database
from storage.issue_rows import issue_from_rows, issue_values, item_values, section_values
from storage.storable import ensure_storable
from storage.tables import IssueRow, ItemRow, SectionRow, core_table


class SaveOutcome(StrEnum):
    CREATED = "created"  # no issue had this date
    REPLACED = "replaced"  # the issue of this date had other content, which is gone now
    UNCHANGED = "unchanged"  # the issue of this date had the same content hash; nothing was written


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """One line of the issue list: enough to show and pick an issue without loading its items."""

    date: dt.date
    title: str
    headline: str | None
    item_count: int
    section_counts: tuple[tuple[str, int], ...]  # (section name, item count) in section order
    content_hash: str
    imported_at: dt.datetime  # when an issue of this date was first saved (UTC)
    updated_at: dt.datetime  # when its content last changed (UTC)


class IssueStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def save(self, issue: Issue, source_text: str) -> SaveOutcome:
        """Store `issue` (parsed from `source_text`) under its date, in one transaction.

        Raises BadInput before touching the database if the issue holds something no backend can store.
        """
        ensure_storable(issue, source_text)
        try:
            return await self._save(issue, source_text)
        except IntegrityError:
            # ensure_storable rules out every constraint but the unique date: another save inserted an
            # issue of this date after we looked. Looking again finds that row and updates or keeps it.
            return await self._save(issue, source_text)

    async def get(self, date: dt.date) -> Issue | None:
        i = core_table(IssueRow)
        async with self._database.transaction("snapshot") as connection:
            row = (await connection.execute(_issue_rows().where(i.c.date == date))).first()
            return None if row is None else await _load_issue(connection, row)

    async def latest(self) -> Issue | None:
        i = core_table(IssueRow)
        async with self._database.transaction("snapshot") as connection:
            row = (await connection.execute(_issue_rows().order_by(i.c.date.desc()).limit(1))).first()
            return None if row is None else await _load_issue(connection, row)

    async def list(self) -> builtins.list[IssueSummary]:
        """Every issue, newest first."""
        i, s, t = core_table(IssueRow), core_table(SectionRow), core_table(ItemRow)
        async with self._database.transaction("snapshot") as connection:
            issue_rows = (await connection.execute(_issue_rows().order_by(i.c.date.desc()))).all()
            section_counts = await connection.execute(
                select(s.c.issue_id, s.c.name, func.count(t.c.id))
                .outerjoin(t, t.c.section_id == s.c.id)
                .group_by(s.c.id)
                .order_by(s.c.issue_id, s.c.position)
            )
            counts_by_issue: defaultdict[int, builtins.list[tuple[str, int]]] = defaultdict(list)
            for issue_id, name, count in section_counts:
                counts_by_issue[issue_id].append((name, count))
        return [_summary(row, tuple(counts_by_issue[row.id])) for row in issue_rows]

    async def delete(self, date: dt.date) -> bool:
        """Remove the issue of `date` with its sections and items; False if there was none."""
        i = core_table(IssueRow)
        async with self._database.transaction("write") as connection:
            result = await connection.execute(delete(i).where(i.c.date == date))
            return result.rowcount > 0

    async def versions(self) -> dict[dt.date, str]:
        """The content hash of every stored issue: all a follower (the search index) needs to see changes."""
        i = core_table(IssueRow)
        async with self._database.transaction() as connection:
            rows = await connection.execute(select(i.c.date, i.c.content_hash))
            return {date: content_hash for date, content_hash in rows}

    async def count(self) -> int:
        i = core_table(IssueRow)
        async with self._database.transaction() as connection:
            return int((await connection.execute(select(func.count()).select_from(i))).scalar_one())

    async def source_text(self, date: dt.date) -> str | None:
        """The Markdown the issue of `date` was saved from."""
        i = core_table(IssueRow)
        async with self._database.transaction() as connection:
            found = await connection.execute(select(i.c.source_text).where(i.c.date == date))
            text: str | None = found.scalar_one_or_none()
            return text

    async def _save(self, issue: Issue, source_text: str) -> SaveOutcome:
        i = core_table(IssueRow)
        async with self._database.transaction("write") as connection:
            # FOR UPDATE: on PostgreSQL a concurrent save of the same date waits here until this one has
            # committed, then reads the hash this one wrote. On SQLite the write transaction already
            # serialises saves.
            found = (
                await connection.execute(
                    select(i.c.id, i.c.content_hash).where(i.c.date == issue.date).with_for_update()
                )
            ).first()
            now = dt.datetime.now(dt.UTC)
            values = issue_values(issue, source_text)
            if found is None:
                inserted = await connection.execute(
                    insert(i).values(**values, imported_at=now, updated_at=now).returning(i.c.id)
                )
                issue_id: int = inserted.scalar_one()
                outcome = SaveOutcome.CREATED
            else:
                issue_id, found_hash = found
                if found_hash == issue.content_hash:
                    return SaveOutcome.UNCHANGED
                # The issue row is kept, not recreated, so its id stays valid for whatever refers to it.
                await connection.execute(update(i).where(i.c.id == issue_id).values(**values, updated_at=now))
                # The items go with their sections: ON DELETE CASCADE.
                sections = core_table(SectionRow)
                await connection.execute(delete(sections).where(sections.c.issue_id == issue_id))
                outcome = SaveOutcome.REPLACED
            await _insert_sections_and_items(connection, issue_id, issue)
            return outcome


def _issue_rows() -> Select[Any]:
    """Issue rows without their source text, which only source_text() needs and can be long."""
    i = core_table(IssueRow)
    return select(*(column for column in i.c if column.name != "source_text"))


async def _load_issue(connection: AsyncConnection, issue_row: Row[Any]) -> Issue:
    s, t = core_table(SectionRow), core_table(ItemRow)
    section_rows = (
        await connection.execute(select(s).where(s.c.issue_id == issue_row.id).order_by(s.c.position))
    ).all()
    item_rows = (
        await connection.execute(
            select(t).where(t.c.issue_id == issue_row.id).order_by(t.c.section_id, t.c.position)
        )
    ).all()
    return issue_from_rows(issue_row, section_rows, item_rows)


async def _insert_sections_and_items(connection: AsyncConnection, issue_id: int, issue: Issue) -> None:
    if not issue.sections:
        return
    # One executemany per table, and RETURNING pairs each new section id with the section's position,
    # which is unique in the issue, so the rows may come back in any order.
    section_table = core_table(SectionRow)
    inserted = await connection.execute(
        insert(section_table).returning(section_table.c.id, section_table.c.position),
        section_values(issue_id, issue),
    )
    section_ids = {position: section_id for section_id, position in inserted}
    items = item_values(issue_id, section_ids, issue)
    if items:
        await connection.execute(insert(core_table(ItemRow)), items)


def _summary(row: Row[Any], section_counts: tuple[tuple[str, int], ...]) -> IssueSummary:
    return IssueSummary(
        date=row.date,
        title=row.title,
        headline=row.headline,
        item_count=sum(count for _, count in section_counts),
        section_counts=section_counts,
        content_hash=row.content_hash,
        imported_at=_as_utc(row.imported_at),
        updated_at=_as_utc(row.updated_at),
    )


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone: what it returns is the UTC time it was given, without tzinfo.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
