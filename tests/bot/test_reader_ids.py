"""The reader ids of tracked links (bot/tokens.py ReaderIds): short, read back, and refused when forged."""

from __future__ import annotations

import pytest

from bot.tokens import MAX_SUBSCRIBER_ID, READER_ID_LENGTH, ReaderIds


def test_a_reader_id_is_read_back_and_anything_else_is_none() -> None:
    readers = ReaderIds("a-secret-key")
    made = readers.make(4242)
    assert len(made) == READER_ID_LENGTH
    assert readers.read(made) == 4242
    assert readers.read(readers.make(MAX_SUBSCRIBER_ID)) == MAX_SUBSCRIBER_ID
    flipped = made[:-1] + ("B" if made[-1] == "A" else "A")
    for bad in (None, "", flipped, made[:-1], made + "A", "!" * READER_ID_LENGTH):
        assert readers.read(bad) is None
    assert ReaderIds("another-key").read(made) is None
    with pytest.raises(ValueError, match="not a subscriber id"):
        readers.make(0)
