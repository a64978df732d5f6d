"""The fixtures of the Feishu tests: the fake custom-bot webhook (tests/fakes/feishu_api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.feishu_api import FakeFeishu, running_fake_feishu


@pytest.fixture
async def fake_feishu() -> AsyncIterator[FakeFeishu]:
    """A fake Feishu webhook server on a free loopback port, with no bots yet."""
    async with running_fake_feishu() as fake:
        yield fake
