"""`jianbao serve --workers 2` for real: a subprocess on a loopback port, its workers found in /proc and
killed with SIGKILL, as a crash or the OOM killer would. A dead worker is replaced; workers that keep
dying stop the service with an error (so that systemd restarts it); SIGTERM stops everything with 0.

Waiting is by polling what can be observed (/proc, /healthz), each wait bounded: no test depends on
how fast anything happens.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.serving import DEATH_WINDOW_SECONDS, MAX_DEATHS
from tests.bot.helpers import jianbao_executable, sqlite_url

WORKERS = 2
# Generous: a worker is a new interpreter importing the app, on a machine other tests share.
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.05
_WORKER_MARK = b"--multiprocessing-fork"  # in a spawned worker's command line, not in the resource tracker


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    seen: set[int] = field(default_factory=set)  # every worker pid ever found, to clean up after a failure

    def workers(self) -> set[int]:
        """The pids of the parent's worker processes (its other child is multiprocessing's tracker)."""
        found = set()
        for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            for pid in children.read_text().split():
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:  # gone meanwhile
                    continue
                if _WORKER_MARK in command:
                    found.add(int(pid))
        self.seen |= found
        return found

    def listening(self, pid: int) -> bool:
        """Whether worker `pid` holds a socket listening on the service's port: it is ready to answer."""
        sockets = set()
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # gone
            return False
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
        return not sockets.isdisjoint(listening_sockets(self.port))

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stderr(self) -> str:
        return (self.folder / "serve.err").read_text(encoding="utf-8", errors="replace")


def wait_for(condition: Callable[[], object], what: str, service: Service) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}; serve's stderr:\n{service.stderr()}", pytrace=False)
        time.sleep(POLL_SECONDS)


def listening_sockets(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on `port` (/proc/net/tcp: hex local address, state 0A)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def start_serve(folder: Path, port: int) -> Service:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JIANBAO_")}
    env["JIANBAO_DATABASE_URL"] = sqlite_url(folder / "serve.db")  # empty: workers start in moments
    with (folder / "serve.out").open("wb") as out, (folder / "serve.err").open("wb") as err:
        command = [str(jianbao_executable()), "serve", "--workers", str(WORKERS), "--port", str(port)]
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=err)
    return Service(process, port, folder)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Service]:
    service = start_serve(tmp_path, free_port())
    try:
        yield service
    finally:
        if service.process.poll() is None:
            service.process.terminate()
            try:
                service.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        for pid in service.seen:
            if alive(pid):  # only after a failed test: left behind by a parent that did not stop them
                os.kill(pid, signal.SIGKILL)


def running(service: Service) -> set[int]:
    """Waits until all the workers listen and the service answers; returns their pids."""

    def ready() -> bool:
        workers = service.workers()
        return len(workers) == WORKERS and all(map(service.listening, workers)) and service.healthy()

    wait_for(ready, "the service to start", service)
    return service.workers()


def kill_and_see_replaced(service: Service, pid: int) -> int:
    """SIGKILL one worker; returns the pid of the worker started in its place."""
    before = service.workers()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: len(service.workers() - before) == 1, f"a worker in place of {pid}", service)
    (replacement,) = service.workers() - before
    return replacement


def test_a_killed_worker_is_replaced_and_sigterm_stops_everything(serve: Service) -> None:
    first, second = sorted(running(serve))

    third = kill_and_see_replaced(serve, first)
    assert serve.healthy()  # the other worker answers meanwhile
    wait_for(lambda: serve.listening(third), "the replacement to listen", serve)
    # With the other original worker killed too, only replacements answer.
    kill_and_see_replaced(serve, second)
    assert serve.healthy()
    assert serve.process.poll() is None

    serve.process.send_signal(signal.SIGTERM)
    assert serve.process.wait(timeout=WAIT_SECONDS) == 0
    assert not any(alive(pid) for pid in serve.seen)
    stderr = serve.stderr()
    assert f"worker 0 (pid {first}) was killed by SIGKILL; starting another" in stderr
    assert "Traceback" not in stderr


def test_workers_that_keep_dying_stop_the_service_with_an_error(serve: Service) -> None:
    survivor, dying = sorted(running(serve))

    for _ in range(MAX_DEATHS):
        dying = kill_and_see_replaced(serve, dying)
    os.kill(dying, signal.SIGKILL)  # one death more than the limit within its window

    assert serve.process.wait(timeout=WAIT_SECONDS) == 1
    assert not alive(survivor)  # the parent stopped the healthy worker too before it exited
    assert not any(alive(pid) for pid in serve.seen)
    stderr = serve.stderr()
    assert f"workers died {MAX_DEATHS + 1} times within {DEATH_WINDOW_SECONDS:.0f} s" in stderr
    assert "Traceback" not in stderr


def test_a_port_another_program_holds_fails_the_service(tmp_path: Path) -> None:
    """The workers share their port (SO_REUSEPORT), which a program listening without it refuses: each
    worker fails at start, with one line, and the service gives up instead of exiting 0."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        service = start_serve(tmp_path, int(holder.getsockname()[1]))
        try:
            code = service.process.wait(timeout=WAIT_SECONDS)
        finally:
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()
    stderr = service.stderr()
    assert code == 1, stderr
    assert f"cannot listen on 127.0.0.1:{service.port}" in stderr
    assert f"workers died {MAX_DEATHS + 1} times" in stderr
    assert "Traceback" not in stderr
