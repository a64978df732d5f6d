"""A broadcast worker starts without the search engine: tantivy, rjieba and OpenCC are ~45 MB of RSS,
which is what kept a worker over its memory budget. Checked in a fresh interpreter, since this test
process has long loaded them."""

from __future__ import annotations

import subprocess
import sys

ENGINE = ("tantivy", "rjieba", "opencc")


def test_worker_command_does_not_load_the_search_engine() -> None:
    code = (
        "import sys, bot.cli, bot.broadcast.cli, bot.broadcast.runtime, bot.app;"
        f"print(','.join(m for m in {ENGINE!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def test_the_index_module_is_what_loads_the_engine() -> None:
    code = "import sys, storage.search.index; print(','.join(m for m in ('tantivy', 'rjieba') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "tantivy,rjieba"


def test_the_command_line_does_not_import_the_web_applications_root() -> None:
    """bot/app.py builds every feature; the CLI's commands (serve aside, which imports it when run) and a
    worker only need storage, so they reach it through the leaf module bot/services.py."""
    code = "import sys, bot.cli, bot.broadcast.cli, bot.broadcast.runtime; print('bot.app' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


def test_the_features_import_no_cycle_through_the_app() -> None:
    """Each feature module imports on its own, before bot.app: none of them needs the root."""
    features = (
        "bot.site",
        "bot.subscriptions",
        "bot.admin",
        "bot.wechat",
        "bot.telegram",
        "bot.broadcast.routes",
    )
    for feature in features:
        code = f"import sys, {feature}; print('bot.app' in sys.modules)"
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert loaded.stdout.strip() == "False", feature
