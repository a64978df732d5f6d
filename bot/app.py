"""The composition root: builds the parts of jianbao in order and closes them in reverse.

For now the parts are storage only; the web service, channels and workers join here as they arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.settings import Settings
from storage.database import Database, database_url
from storage.issues import IssueStore


@dataclass(frozen=True, slots=True)
class Storage:
    database: Database
    issues: IssueStore


@asynccontextmanager
async def open_storage(settings: Settings) -> AsyncIterator[Storage]:
    database = Database(database_url(settings.database_url))
    await database.open()
    try:
        await database.migrate()
        yield Storage(database=database, issues=IssueStore(database))
    finally:
        await database.close()
