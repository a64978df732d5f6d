"""Running the service: one process, or several sharing the port (SO_REUSEPORT) to use every core.

With several workers each process builds its own app (own search index, own caches): the database is
the only thing they share. Per-process caches (WeChat's duplicate-delivery cache, Telegram's page keys)
then only see their own worker's traffic; a platform retry that lands on another worker is processed
again, which every handler tolerates (subscribing twice is a no-op, a search is read-only).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from typing import Any

from aiohttp import web

from bot.app import create_app, prepare_storage
from bot.settings import Settings


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    if workers <= 1:
        web.run_app(create_app(settings), host=host, port=port, print=None, access_log=None)
        return
    # Migrate and import the demo content once, before the workers race to do it.
    asyncio.run(prepare_storage(settings))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(settings.model_dump(), host, port, index), daemon=True)
        for index in range(workers)
    ]
    for process in processes:
        process.start()

    def stop(*_: Any) -> None:
        for process in processes:
            process.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        stop()
        for process in processes:
            process.join(timeout=10)


def _worker(values: dict[str, Any], host: str, port: int, index: int) -> None:
    if index > 0:
        # One broadcast worker is enough, and with SQLite's local rates several would add up.
        values = values | {"serve_worker": "off"}
    settings = Settings(**values)
    web.run_app(create_app(settings), host=host, port=port, print=None, access_log=None, reuse_port=True)
