"""Running the service: one process, or several sharing the port (SO_REUSEPORT) to use every core.

With several workers each process builds its own app (own search index, own caches): the database is
the only thing they share. Per-process caches (WeChat's duplicate-delivery cache, Telegram's page keys)
then only see their own worker's traffic; a platform retry that lands on another worker is processed
again, which every handler tolerates (subscribing twice is a no-op, a search is read-only).

The parent only watches its workers: one that dies (a crash, the OOM killer) is started again, so the
service keeps its capacity; workers that keep dying make the parent stop the rest and fail, so that the
service manager restarts the whole service and the operator sees why. SIGTERM or Ctrl-C stops every
worker cleanly and the parent exits 0.

Stopping drains: on SIGTERM a process stops accepting connections at once, lets the requests in flight
finish for up to DRAIN_SECONDS, then cleans up (with JIANBAO_SERVE_WORKER, its broadcast worker stops too)
and exits 0. The stop timeouts in deploy/ are longer than that whole stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

from aiohttp import web

from bot.app import create_app, freeze_long_lived, prepare_storage
from bot.http_policy import BODY_DEADLINE_SECONDS
from bot.settings import Settings
from content.errors import JianbaoError

log = logging.getLogger(__name__)

# More than MAX_DEATHS worker deaths within DEATH_WINDOW_SECONDS: the cause will not go away by starting
# workers again (a port another program holds, a request that kills every worker it reaches), and a
# worker that dies at start would otherwise be restarted in a loop forever.
MAX_DEATHS = 5
DEATH_WINDOW_SECONDS = 60.0
# How long requests in flight at SIGTERM get to finish before aiohttp cancels them. A handler that has its
# request answers within seconds (WeChat's reply within 4 s; a platform API call within its timeout); one
# whose body is still arriving gets no more of it (aiohttp reads nothing more from a closing connection)
# and answers 408 at BODY_DEADLINE_SECONDS. So every request ends with an answer within this, and a longer
# wait (aiohttp's default is a minute) would only hold up restarts and deploys.
DRAIN_SECONDS = BODY_DEADLINE_SECONDS + 10.0
# How long a stopping worker process gets before it is killed: the drain, then its cleanup, which with
# JIANBAO_SERVE_WORKER includes the broadcast worker's own stop grace (JIANBAO_WORKER_STOP_SECONDS, 20 s by
# default) and closing the database.
STOP_SECONDS = DRAIN_SECONDS + 25.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Connections waiting to be accepted. aiohttp's default of 128 is less than the connections WeChat opens
# in a burst of replies after a broadcast (200 in flight in scripts/load_service.py): the kernel drops the
# SYNs over it, and the client's retransmission makes those replies a second late. The kernel caps it at
# net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 1024


class WorkersKeepDying(JianbaoError):
    kind = "workers_keep_dying"


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    if workers <= 1:
        _run_app(settings, host, port)
        return
    # Migrate and import the demo content once, before the workers race to do it.
    asyncio.run(prepare_storage(settings))
    Supervisor(settings, host, port, workers).run()


def _run_app(settings: Settings, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then drain (DRAIN_SECONDS) and clean up."""
    app = create_app(settings)
    app.on_startup.append(freeze_long_lived)  # after every feature's start: see freeze_long_lived
    web.run_app(
        app,
        host=host,
        port=port,
        print=None,
        access_log=None,
        shutdown_timeout=DRAIN_SECONDS,
        reuse_port=reuse_port,
        backlog=LISTEN_BACKLOG,
    )


class Supervisor:
    """Starts `count` workers and keeps that many running until a stop signal, or until they keep dying."""

    def __init__(self, settings: Settings, host: str, port: int, count: int) -> None:
        self._arguments = (settings.model_dump(), host, port)
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, SpawnProcess] = {}  # by worker index: index 0 also runs broadcasts
        self._deaths: deque[float] = deque()
        self._stopping = False

    def run(self) -> None:
        """Returns after a stop signal; raises WorkersKeepDying when they do. Workers are gone either way."""
        # A signal handler can only set a flag; the byte it writes wakes the wait for a worker's death.
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        previous = {number: signal.signal(number, self._stop_on(wake_write)) for number in _STOP_SIGNALS}
        try:
            for index in range(self._count):
                self._start(index)
            while not self._stopping:
                ready = wait([*(worker.sentinel for worker in self._workers.values()), wake_read])
                for index, worker in list(self._workers.items()):
                    if worker.sentinel in ready and not self._stopping:
                        self._replace(index, worker)
        finally:
            self._stop_all()
            for number, handler in previous.items():
                signal.signal(number, handler)
            os.close(wake_read)
            os.close(wake_write)

    def _stop_on(self, wake: int) -> Callable[[int, FrameType | None], None]:
        def handler(_number: int, _frame: FrameType | None) -> None:
            self._stopping = True
            with contextlib.suppress(BlockingIOError):  # a full pipe: earlier wake-ups are pending
                os.write(wake, b"\0")

        return handler

    def _start(self, index: int) -> None:
        # daemon: should the parent itself fail, multiprocessing terminates the workers as it exits.
        worker = self._context.Process(target=_worker, args=(*self._arguments, index), daemon=True)
        worker.start()
        self._workers[index] = worker

    def _replace(self, index: int, worker: SpawnProcess) -> None:
        worker.join()
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - DEATH_WINDOW_SECONDS:
            self._deaths.popleft()
        how = _exit_description(worker.exitcode)
        if len(self._deaths) > MAX_DEATHS:
            raise WorkersKeepDying(
                f"workers died {len(self._deaths)} times within {DEATH_WINDOW_SECONDS:.0f} s "
                f"(the last {how}); stopping the service"
            )
        log.warning("serve: worker %d (pid %s) %s; starting another", index, worker.pid, how)
        self._start(index)

    def _stop_all(self) -> None:
        running = [worker for worker in self._workers.values() if worker.is_alive()]
        for worker in running:
            worker.terminate()  # SIGTERM: aiohttp drains the requests in flight and exits
        deadline = time.monotonic() + STOP_SECONDS
        for worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning(
                    "serve: worker pid %s did not stop within %.0f s; killed", worker.pid, STOP_SECONDS
                )
                worker.kill()
                worker.join()


def _exit_description(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _worker(values: dict[str, Any], host: str, port: int, index: int) -> None:
    if index > 0:
        # One broadcast worker is enough, and with SQLite's local rates several would add up.
        values = values | {"serve_worker": "off"}
    settings = Settings(**values)
    try:
        _run_app(settings, host, port, reuse_port=True)
    except OSError as error:  # the port is held by a program that does not share it: one line, no trace
        log.error("serve: worker %d cannot listen on %s:%d: %s", index, host, port, error.strerror or error)
        raise SystemExit(1) from None
