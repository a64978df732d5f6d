"""Fixtures of the bot tests: a database of its own for each CLI run, and one with the demo imported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot.helpers import postgres_database, run_cli, sqlite_url
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
async def cli_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """JIANBAO_DATABASE_URL of a database of its own for one CLI test, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "cli.db")
    else:
        async with postgres_database() as url:
            yield url


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A SQLite database (URL, working folder) into which the CLI imported the demo issues once.

    Shared by the read-only CLI tests of a module, so that the import subprocess runs once for all of them.
    """
    folder = tmp_path_factory.mktemp("demo_db")
    url = sqlite_url(folder / "demo.db")
    result = run_cli("import", "--demo", database_url=url, cwd=folder)
    assert result.code == 0, result.stderr
    return url, folder
