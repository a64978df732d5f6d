"""Editor accounts and console sessions on both backends."""

from __future__ import annotations

import datetime as dt

import pytest

from content.errors import BadInput
from storage.database import Database
from storage.editors import EditorExists, EditorStore, token_hash
from storage.tables import EditorSessionRow, core_table

T0 = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


async def test_a_name_is_taken_once_and_spaces_are_refused(db: Database) -> None:
    editors = EditorStore(db)
    added = await editors.add("li", "hash-1")
    assert (await editors.get("li")) == added
    with pytest.raises(EditorExists):
        await editors.add("li", "hash-2")
    with pytest.raises(BadInput):
        await editors.add("two words", "hash")
    assert await editors.names() == ["li"]


async def test_a_session_lives_until_it_expires_or_ends(db: Database) -> None:
    clock = Clock()
    editors = EditorStore(db, clock=clock)
    editor = await editors.add("li", "hash")
    await editors.start_session(editor, "token-a", dt.timedelta(hours=1))
    await editors.start_session(editor, "token-b", dt.timedelta(hours=1))
    assert await editors.session_editor("token-a") == editor
    assert await editors.session_editor("token-x") is None
    await editors.end_session("token-a")
    assert await editors.session_editor("token-a") is None
    clock.now = T0 + dt.timedelta(hours=2)
    assert await editors.session_editor("token-b") is None  # expired


async def test_only_a_hash_of_the_token_is_stored_and_a_new_password_ends_sessions(db: Database) -> None:
    editors = EditorStore(db)
    editor = await editors.add("li", "hash")
    await editors.start_session(editor, "secret-token", dt.timedelta(hours=1))
    s = core_table(EditorSessionRow)
    async with db.transaction() as connection:
        stored = list((await connection.execute(s.select())).mappings())
    assert [row["token_hash"] for row in stored] == [token_hash("secret-token")]
    assert "secret-token" not in repr(stored)
    assert await editors.set_password("li", "new-hash")
    assert await editors.session_editor("secret-token") is None
    assert not await editors.set_password("nobody", "x")
