"""`jianbao worker` processes for crash tests and benchmarks: their environment, starting, killing,
stopping, and what they wrote to stderr.

Each worker runs in `cwd` (a tmp folder, so no `.env` is read) with an environment built by `worker_env`:
the caller's environment without any JIANBAO_* variable, plus the settings given. Its stdout and stderr go
to a log file of its own in `cwd`, which is read back for its name ("jianbao worker NAME: sending on ...")
and for tracebacks. Killing is SIGKILL to the one process, by its pid: nothing of it runs afterwards, so
whatever it had sent but not yet recorded is exactly what was "in flight".

Usable from a benchmark script as well as from a test: nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# "jianbao worker host:pid:hex: sending on telegram, email" (bot/broadcast/cli.py)
_STARTED = re.compile(r"^jianbao worker (\S+): sending on (.+)$", re.MULTILINE)


def jianbao_command() -> list[str]:
    """The `jianbao` console script of the running interpreter's environment (or its entry point run by
    the interpreter, when the script is not there)."""
    beside_python = Path(sys.executable).parent / "jianbao"
    if beside_python.is_file():
        return [str(beside_python)]
    return [sys.executable, "-c", "from bot.cli import main; main()"]


def worker_env(
    *,
    database_url: str,
    telegram_api_url: str | None = None,
    telegram_token: str | None = None,
    smtp_url: str | None = None,
    wecom_api_url: str = "",
    feishu_api_url: str = "",
    public_url: str = "https://jianbao.example.com",
    secret_key: str = "crash-test-secret-key",
    lease_seconds: float = 3.0,
    poll_seconds: float = 0.2,
    retry_seconds: float = 0.2,
    concurrency: int | None = None,
    rate_limits: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a worker: this process's, minus every JIANBAO_* variable, plus these settings.

    Rate limits are off by default (also the 1 s between two messages to one chat), as for a run against
    the fakes; a robot channel's own per-robot pacing is always on. The robot channels (WeCom, Feishu) are
    off unless their fake's URL is given: their settings default to the real platforms, which a worker
    started here must never reach. `extra` adds or overrides JIANBAO_* settings by full name.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("JIANBAO_")}
    settings: dict[str, str] = {
        "JIANBAO_DATABASE_URL": database_url,
        "JIANBAO_PUBLIC_URL": public_url,
        "JIANBAO_SECRET_KEY": secret_key,
        "JIANBAO_RATE_LIMITS": "true" if rate_limits else "false",
        "JIANBAO_TELEGRAM_CHAT_INTERVAL": "1" if rate_limits else "0",
        "JIANBAO_WORKER_LEASE_SECONDS": str(lease_seconds),
        "JIANBAO_WORKER_POLL_SECONDS": str(poll_seconds),
        "JIANBAO_RETRY_SECONDS": str(retry_seconds),
        "JIANBAO_WECOM_API_URL": wecom_api_url,
        "JIANBAO_FEISHU_API_URL": feishu_api_url,
    }
    if telegram_api_url is not None:
        settings["JIANBAO_TELEGRAM_API_URL"] = telegram_api_url
        if telegram_token is None:
            raise ValueError("telegram_api_url needs telegram_token")
        settings["JIANBAO_TELEGRAM_TOKEN"] = telegram_token
    if smtp_url is not None:
        settings["JIANBAO_SMTP_URL"] = smtp_url
    if concurrency is not None:
        settings["JIANBAO_WORKER_CONCURRENCY"] = str(concurrency)
    settings.update(extra or {})
    env.update(settings)
    # A worker's own output is not a terminal: keep rich from guessing a width or colours.
    for name in ("COLUMNS", "LINES", "FORCE_COLOR"):
        env.pop(name, None)
    return env


@dataclass
class WorkerProcess:
    """One `jianbao worker` process and its log file."""

    process: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic() at start
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    @property
    def name(self) -> str | None:
        """The worker's name (host:pid:hex) once it has printed it, i.e. once it is sending."""
        found = _STARTED.search(self.output)
        return found.group(1) if found else None

    def kill(self) -> None:
        """SIGKILL, and reap the process (a SIGKILLed process is gone at once)."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.killed = True

    def terminate(self) -> None:
        """SIGTERM: the worker finishes the deliveries in hand, records them and exits 0."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)


@dataclass
class WorkerPool:
    """`jianbao worker` processes started with one environment in one folder."""

    env: dict[str, str]
    cwd: Path
    until_done: bool = True
    workers: list[WorkerProcess] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> WorkerProcess:
        log = self.cwd / f"worker-{next(self._numbers)}.log"
        command = [*jianbao_command(), "worker", *(["--until-done"] if self.until_done else [])]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, cwd=self.cwd, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(process, log, time.monotonic())
        self.workers.append(worker)
        return worker

    @property
    def alive(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers if worker.alive]

    async def wait_ready(self, workers: Iterable[WorkerProcess], seconds: float = 30.0) -> None:
        """Until each of `workers` has printed its name (it connected and is claiming), or exited."""
        deadline = time.monotonic() + seconds
        pending = list(workers)
        while pending:
            pending = [worker for worker in pending if worker.alive and worker.name is None]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} worker(s) not ready after {seconds:.0f} s")
            await asyncio.sleep(0.05)

    async def wait_all(self, seconds: float) -> bool:
        """Until every worker has exited (True), or `seconds` passed (False)."""
        deadline = time.monotonic() + seconds
        while self.alive:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def stop_all(self, seconds: float = 15.0) -> None:
        """SIGTERM to every live worker; SIGKILL to any still running after `seconds`."""
        for worker in self.alive:
            worker.terminate()
        if not await self.wait_all(seconds):
            for worker in self.alive:
                worker.kill()

    def logs(self) -> str:
        """Everything every worker wrote, in the order they were started."""
        return "".join(worker.output for worker in self.workers)

    def failures(self) -> list[str]:
        """What went wrong in workers that were not killed: non-zero exits and tracebacks (any worker)."""
        problems = []
        for worker in self.workers:
            code = worker.process.poll()
            if not worker.killed and code not in (0, None):
                problems.append(f"worker pid {worker.pid} exited {code}:\n{worker.output[-3000:]}")
            if "Traceback" in worker.output:
                problems.append(f"worker pid {worker.pid} logged a traceback:\n{worker.output[-3000:]}")
        return problems
