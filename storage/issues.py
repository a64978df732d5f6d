"""The store of newsletter issues: save one (idempotently, by date and content hash), read them back."""

from __future__ import annotations

import builtins
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

from sqlalchemy import delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import QueryableAttribute, defer
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

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
        async with self._database.session("snapshot") as session, session.begin():
            row = (await session.exec(_issue_rows().where(col(IssueRow.date) == date))).first()
            return None if row is None else await _load_issue(session, row)

    async def latest(self) -> Issue | None:
        async with self._database.session("snapshot") as session, session.begin():
            row = (await session.exec(_issue_rows().order_by(col(IssueRow.date).desc()).limit(1))).first()
            return None if row is None else await _load_issue(session, row)

    async def list(self) -> builtins.list[IssueSummary]:
        """Every issue, newest first."""
        async with self._database.session("snapshot") as session, session.begin():
            issue_rows = (await session.exec(_issue_rows().order_by(col(IssueRow.date).desc()))).all()
            section_counts = await session.exec(
                select(col(SectionRow.issue_id), col(SectionRow.name), func.count(col(ItemRow.id)))
                .outerjoin(ItemRow, col(ItemRow.section_id) == col(SectionRow.id))
                .group_by(col(SectionRow.id))
                .order_by(col(SectionRow.issue_id), col(SectionRow.position))
            )
            counts_by_issue: defaultdict[int, builtins.list[tuple[str, int]]] = defaultdict(list)
            for issue_id, name, count in section_counts:
                counts_by_issue[issue_id].append((name, count))
        return [_summary(row, tuple(counts_by_issue[_row_id(row)])) for row in issue_rows]

    async def delete(self, date: dt.date) -> bool:
        """Remove the issue of `date` with its sections and items; False if there was none."""
        async with self._database.session("write") as session, session.begin():
            result = await session.exec(
                delete(IssueRow)
                .where(col(IssueRow.date) == date)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount > 0

    async def versions(self) -> dict[dt.date, str]:
        """The content hash of every stored issue: all a follower (the search index) needs to see changes."""
        async with self._database.session() as session:
            rows = await session.exec(select(col(IssueRow.date), col(IssueRow.content_hash)))
            return {date: content_hash for date, content_hash in rows}

    async def count(self) -> int:
        async with self._database.session() as session:
            return (await session.exec(select(func.count()).select_from(IssueRow))).one()

    async def source_text(self, date: dt.date) -> str | None:
        """The Markdown the issue of `date` was saved from."""
        async with self._database.session() as session:
            return (
                await session.exec(select(col(IssueRow.source_text)).where(col(IssueRow.date) == date))
            ).first()

    async def _save(self, issue: Issue, source_text: str) -> SaveOutcome:
        async with self._database.session("write") as session, session.begin():
            # FOR UPDATE: on PostgreSQL a concurrent save of the same date waits here until this one has
            # committed, then reads the hash this one wrote. On SQLite the write transaction already
            # serialises saves.
            found = (
                await session.exec(
                    select(col(IssueRow.id), col(IssueRow.content_hash))
                    .where(col(IssueRow.date) == issue.date)
                    .with_for_update()
                )
            ).first()
            now = dt.datetime.now(dt.UTC)
            values = issue_values(issue, source_text)
            if found is None:
                inserted = await session.exec(
                    insert(IssueRow)
                    .values(**values, imported_at=now, updated_at=now)
                    .returning(col(IssueRow.id))
                )
                issue_id: int = inserted.scalar_one()
                outcome = SaveOutcome.CREATED
            else:
                found_id, found_hash = found
                if found_hash == issue.content_hash:
                    return SaveOutcome.UNCHANGED
                assert found_id is not None
                issue_id = found_id
                # The issue row is kept, not recreated, so its id stays valid for whatever refers to it.
                await session.exec(
                    update(IssueRow)
                    .where(col(IssueRow.id) == issue_id)
                    .values(**values, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                # The items go with their sections: ON DELETE CASCADE.
                await session.exec(
                    delete(SectionRow)
                    .where(col(SectionRow.issue_id) == issue_id)
                    .execution_options(synchronize_session=False)
                )
                outcome = SaveOutcome.REPLACED
            await _insert_sections_and_items(session, issue_id, issue)
            return outcome


def _issue_rows() -> SelectOfScalar[IssueRow]:
    """Issue rows without their source text, which only source_text() needs and can be long."""
    # SQLModel types a column attribute as its value (str); on the class it is an InstrumentedAttribute.
    source_text = cast("QueryableAttribute[str]", IssueRow.source_text)
    return select(IssueRow).options(defer(source_text))


async def _load_issue(session: AsyncSession, issue_row: IssueRow) -> Issue:
    issue_id = _row_id(issue_row)
    section_rows = (
        await session.exec(
            select(SectionRow).where(col(SectionRow.issue_id) == issue_id).order_by(col(SectionRow.position))
        )
    ).all()
    item_rows = (
        await session.exec(
            select(ItemRow)
            .where(col(ItemRow.issue_id) == issue_id)
            .order_by(col(ItemRow.section_id), col(ItemRow.position))
        )
    ).all()
    return issue_from_rows(issue_row, section_rows, item_rows)


async def _insert_sections_and_items(session: AsyncSession, issue_id: int, issue: Issue) -> None:
    if not issue.sections:
        return
    # Core inserts on the tables, not ORM bulk inserts: the ORM splits rows into one INSERT per set of
    # non-NULL columns, Core sends one executemany per table. RETURNING pairs each new section id with
    # the section's position, which is unique in the issue, so the rows may come back in any order.
    section_table = core_table(SectionRow)
    inserted = await session.exec(
        insert(section_table).returning(section_table.c.id, section_table.c.position),
        params=section_values(issue_id, issue),
    )
    section_ids = {position: section_id for section_id, position in inserted}
    items = item_values(issue_id, section_ids, issue)
    if items:
        await session.exec(insert(core_table(ItemRow)), params=items)


def _row_id(row: IssueRow) -> int:
    assert row.id is not None  # rows read from the database always have their id
    return row.id


def _summary(row: IssueRow, section_counts: tuple[tuple[str, int], ...]) -> IssueSummary:
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
