"""The fixtures of the WeCom tests: the fake robot webhook (tests/fakes/wecom_api.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.wecom_api import KEY, OTHER_KEY, FakeWeCom, running_fake_wecom


@pytest.fixture
async def fake_wecom() -> AsyncIterator[FakeWeCom]:
    """A fake WeCom webhook server on a free loopback port, with the robots KEY and OTHER_KEY."""
    async with running_fake_wecom(KEY, OTHER_KEY) as fake:
        yield fake
