"""Settings are declared once in bot/settings.py; the sample env file must list every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import Settings

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "jianbao.env.sample"


def test_sample_env_lists_every_setting_and_nothing_else() -> None:
    listed = re.findall(
        r"^#?\s*(JIANBAO_[A-Z0-9_]+)=", SAMPLE.read_text(encoding="utf-8"), flags=re.MULTILINE
    )
    declared = [f"JIANBAO_{name.upper()}" for name in Settings.model_fields]
    assert sorted(listed) == sorted(declared)


def test_every_setting_has_help() -> None:
    assert all(field.description for field in Settings.model_fields.values())


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIANBAO_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert Settings().database_url == "postgresql://postgres@127.0.0.1:5432/test"
