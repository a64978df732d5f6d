"""The composition root's word on settings: what is on but weaker than it should be, said at start."""

from __future__ import annotations

import socket
from pathlib import Path

from bot.app import channel_warnings
from bot.settings import Settings
from tests.bot.helpers import run_cli, sqlite_url

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_plain_mode_wechat_is_warned_about_and_safe_mode_is_not() -> None:
    plain = channel_warnings(Settings(wechat_token="token"))
    assert len(plain) == 1
    assert plain[0].startswith("wechat runs in plain (compatible) mode")
    assert "JIANBAO_WECHAT_AES_KEY" in plain[0]
    assert channel_warnings(Settings(wechat_token="token", wechat_aes_key=AES_KEY, wechat_appid="wx1")) == []
    assert channel_warnings(Settings()) == []  # WeChat off: nothing to warn about


def test_serve_prints_the_warning_at_start(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JIANBAO_WECHAT_TOKEN=token\n")
    with socket.socket() as busy:  # a port already taken: serve prints its banner, then cannot listen
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "serve", "--port", str(port), database_url=sqlite_url(tmp_path / "serve.db"), cwd=tmp_path
        )
    assert result.code == 1
    assert "warning: wechat runs in plain (compatible) mode" in " ".join(result.stdout.split())
