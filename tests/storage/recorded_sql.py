"""Records the SQL statements a database sends, to count queries and to check that nothing was written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from storage.database import Database

WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP")


@contextmanager
def recorded_sql(database: Database) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()))

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def writes(statements: list[str]) -> list[str]:
    return [s for s in statements if s.upper().startswith(WRITES)]


def selects(statements: list[str]) -> list[str]:
    return [s for s in statements if s.upper().startswith("SELECT")]
