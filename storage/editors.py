"""Editors (who may use the console) and their signed-in sessions.

Storage keeps what it is given: a password hash made by the application (bot/console/passwords.py), and
for a session the SHA-256 of its cookie token, never the token itself. Names are compared as given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from content.errors import BadInput
from storage.database import Database
from storage.tables import EDITOR_NAME_LENGTH, EditorRow, EditorSessionRow, core_table


@dataclass(frozen=True, slots=True)
class Editor:
    id: int
    name: str
    password_hash: str


class EditorExists(BadInput):
    kind = "editor_exists"


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_editor_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > EDITOR_NAME_LENGTH or not name.isprintable() or any(c.isspace() for c in name):
        raise BadInput(f"an editor name is 1-{EDITOR_NAME_LENGTH} printable characters without spaces")
    return name


class EditorStore:
    def __init__(self, database: Database, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self._database = database
        self._clock = clock

    async def add(self, name: str, password_hash: str) -> Editor:
        name = check_editor_name(name)
        e = core_table(EditorRow)
        try:
            async with self._database.transaction("write") as connection:
                result = await connection.execute(
                    insert(e).values(name=name, password_hash=password_hash, created_at=self._clock())
                )
        except IntegrityError:
            raise EditorExists(f"an editor named {name!r} exists already") from None
        editor_id: int = result.inserted_primary_key[0]  # type: ignore[index]  # one row was inserted
        return Editor(editor_id, name, password_hash)

    async def set_password(self, name: str, password_hash: str) -> bool:
        """A new hash (a changed password, or one rehashed with stronger parameters); False if no such
        editor. Their sessions end: whoever signed in with the old password is signed out."""
        e, s = core_table(EditorRow), core_table(EditorSessionRow)
        async with self._database.transaction("write") as connection:
            row = (await connection.execute(select(e.c.id).where(e.c.name == name))).first()
            if row is None:
                return False
            await connection.execute(update(e).where(e.c.id == row.id).values(password_hash=password_hash))
            await connection.execute(delete(s).where(s.c.editor_id == row.id))
        return True

    async def get(self, name: str) -> Editor | None:
        e = core_table(EditorRow)
        async with self._database.transaction() as connection:
            row = (await connection.execute(select(e).where(e.c.name == name))).first()
        return None if row is None else Editor(row.id, row.name, row.password_hash)

    async def names(self) -> list[str]:
        e = core_table(EditorRow)
        async with self._database.transaction() as connection:
            return list((await connection.execute(select(e.c.name).order_by(e.c.name))).scalars())

    async def start_session(self, editor: Editor, token: str, lifetime: dt.timedelta) -> None:
        now = self._clock()
        s = core_table(EditorSessionRow)
        async with self._database.transaction("write") as connection:
            # Expired sessions go when someone signs in: the table holds only live ones and a few stale.
            await connection.execute(delete(s).where(s.c.expires_at < now))
            await connection.execute(
                insert(s).values(
                    token_hash=token_hash(token),
                    editor_id=editor.id,
                    created_at=now,
                    expires_at=now + lifetime,
                )
            )

    async def session_editor(self, token: str) -> Editor | None:
        """The editor a live session token belongs to, or None."""
        e, s = core_table(EditorRow), core_table(EditorSessionRow)
        query = (
            select(e)
            .join(s, s.c.editor_id == e.c.id)
            .where(s.c.token_hash == token_hash(token), s.c.expires_at > self._clock())
        )
        async with self._database.transaction() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else Editor(row.id, row.name, row.password_hash)

    async def end_session(self, token: str) -> None:
        s = core_table(EditorSessionRow)
        async with self._database.transaction("write") as connection:
            await connection.execute(delete(s).where(s.c.token_hash == token_hash(token)))
