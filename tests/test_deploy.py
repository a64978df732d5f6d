"""The deployment files in deploy/ against the code they run: every `jianbao ...` command they start is one
the command line accepts, compose has a scalable worker beside the app, the stop timeouts outlast what
the processes do on SIGTERM, and `serve` really drains: a request in flight at SIGTERM is answered and the
process exits 0.

That deploy/jianbao.env.sample lists every setting is tests/bot/test_settings.py's to check.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer.core
import typer.main
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; only tests use it
from typer.exceptions import TyperException

from bot.cli import app as cli_app
from bot.serving import DRAIN_SECONDS, STOP_SECONDS
from bot.settings import Settings
from bot.telegram import SECRET_HEADER
from tests.bot.helpers import jianbao_executable, sqlite_url
from tests.bot.telegram_helpers import SECRET as TELEGRAM_SECRET
from tests.bot.test_serving import free_port, listening_sockets
from tests.fakes.faults import FaultPlan
from tests.fakes.telegram_api import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_api import running_fake_telegram
from tests.fakes.telegram_updates import message_update

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
SERVE_UNIT = DEPLOY / "jianbao.service"
WORKER_UNIT = DEPLOY / "jianbao-worker@.service"
# What a worker does on SIGTERM: finish the deliveries in hand for this long by default.
WORKER_STOP_SECONDS = Settings.model_fields["worker_stop_seconds"].default
# The unit settings that confine the service (and where it reads its settings from): the same for workers.
CONFINEMENT = (
    "User",
    "Group",
    "WorkingDirectory",
    "EnvironmentFile",
    "NoNewPrivileges",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "ReadWritePaths",
    "StateDirectory",
)


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's settings, each key with its values in order (a key may be given several times)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def only(values: dict[str, list[str]], key: str) -> str:
    assert len(values.get(key, [])) == 1, f"{key}= should be set once: {values.get(key)}"
    return values[key][0]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|min|sec|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def seconds(duration: str) -> float:
    """A compose duration (1m30s) or a systemd time span (90, 90s, 1min 30s) in seconds."""
    parts = _DURATION_PART.findall(duration.replace(" ", ""))
    assert "".join(number + suffix for number, suffix in parts) == duration.replace(" ", ""), duration
    return sum(float(number) * _UNIT_SECONDS[suffix or None] for number, suffix in parts)


# --- the commands the deploy files run ---------------------------------------------------------------


def jianbao_commands() -> dict[str, list[str]]:
    """Where -> the arguments given to `jianbao`, for every jianbao command the deploy files start."""
    found = {}
    (cmd,) = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if line.startswith("CMD ")]
    argv = yaml.safe_load(cmd.removeprefix("CMD "))  # the exec form is a JSON array, which YAML reads
    assert argv[0] == "jianbao", cmd
    found["Dockerfile CMD"] = argv[1:]
    for name, service in services().items():
        command = service.get("command")
        argv = shlex.split(command) if isinstance(command, str) else command
        if argv and argv[0] == "jianbao":
            found[f"compose {name}"] = argv[1:]
    for path in (SERVE_UNIT, WORKER_UNIT):
        for line in unit(path).get("ExecStart", []):
            argv = shlex.split(line)
            assert Path(argv[0]).name == "jianbao", line
            found[f"{path.name} ExecStart"] = argv[1:]
    return found


def parse(args: list[str]) -> str:
    """The command `jianbao ARGS` runs, with ARGS parsed as the command line would, down to the command's
    own options and their types; a usage error (exit status 2: unknown command or option, bad value)
    otherwise. Nothing runs."""
    command = typer.main.get_command(cli_app)
    name, parent = "jianbao", None
    while isinstance(command, typer.core.TyperGroup):
        context = typer.Context(command, info_name=name, parent=parent)
        found_name, found, args = command.resolve_command(context, args)
        assert found_name is not None
        assert found is not None
        name, command, parent = found_name, found, context
    command.make_context(name, list(args), parent=parent)
    return name


def test_the_deploy_files_run_serve_and_workers() -> None:
    commands = jianbao_commands()
    assert {where: args[0] for where, args in commands.items()} == {
        "Dockerfile CMD": "serve",
        "compose worker": "worker",
        "jianbao.service ExecStart": "serve",
        "jianbao-worker@.service ExecStart": "worker",
    }


@pytest.mark.parametrize("where", sorted(jianbao_commands()))
def test_every_jianbao_command_is_one_the_command_line_accepts(where: str) -> None:
    args = jianbao_commands()[where]
    assert parse(args) == args[0]


@pytest.mark.parametrize(
    "args",
    [["no-such-command"], ["worker", "--no-such-option"], ["serve", "--port", "eighty"], ["serve", "extra"]],
)
def test_the_check_refuses_what_the_command_line_refuses(args: list[str]) -> None:
    with pytest.raises(TyperException) as refused:
        parse(args)
    assert refused.value.exit_code == 2


def test_deploy_files_name_only_settings_that_exist() -> None:
    """A misspelt variable (JIANBAO_SERVE_WORKERS) would be ignored without a word."""
    declared = {f"JIANBAO_{name.upper()}" for name in Settings.model_fields}
    for path in (DOCKERFILE, COMPOSE, SERVE_UNIT, WORKER_UNIT):
        named = set(re.findall(r"\bJIANBAO_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
        assert named <= declared, f"{path.name}: {sorted(named - declared)}"


# --- compose --------------------------------------------------------------------------------------


def test_compose_runs_app_workers_and_the_database() -> None:
    found = services()
    assert {"app", "worker", "db"} <= set(found)
    app, worker = found["app"], found["worker"]
    assert worker["command"] == ["jianbao", "worker"]
    assert worker["depends_on"]["db"]["condition"] == "service_healthy"
    assert worker["restart"] == "unless-stopped"
    # The same image and the same settings and database as the app.
    for key in ("build", "env_file"):
        assert worker[key] == app[key], key
    # The db service, unless .env names another PostgreSQL (workers on other machines).
    url = app["environment"]["JIANBAO_DATABASE_URL"]
    assert url.startswith("${JIANBAO_DATABASE_URL:-postgresql://")
    assert url.endswith("@db:5432/jianbao}")
    assert worker["environment"]["JIANBAO_DATABASE_URL"] == url
    # Broadcasts are the workers' alone.
    assert app["environment"]["JIANBAO_SERVE_WORKER"] == "off"
    assert "JIANBAO_SERVE_WORKER" not in worker["environment"]


def test_the_worker_service_scales() -> None:
    """`docker compose up --scale worker=N` fails on a fixed container name or host port."""
    worker = services()["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    # The image's HEALTHCHECK asks an HTTP port; a worker opens none and would show as unhealthy.
    assert worker["healthcheck"] == {"disable": True}


def test_compose_app_is_healthy_when_ready() -> None:
    test = services()["app"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert "/readyz" in test[-1]


def test_compose_stop_grace_periods_outlast_the_stops() -> None:
    found = services()
    assert seconds(found["app"]["stop_grace_period"]) > STOP_SECONDS
    assert seconds(found["worker"]["stop_grace_period"]) > WORKER_STOP_SECONDS


# --- systemd ----------------------------------------------------------------------------------------


def test_the_worker_unit_is_a_template_confined_like_the_service() -> None:
    service, worker = unit(SERVE_UNIT), unit(WORKER_UNIT)
    assert WORKER_UNIT.name.endswith("@.service")
    assert "%i" in only(worker, "Description")
    assert only(worker, "ExecStart") == "/opt/jianbao/.venv/bin/jianbao worker"
    assert only(worker, "Restart") == "always"
    assert only(worker, "KillSignal") == "SIGTERM"
    for key in CONFINEMENT:
        assert worker.get(key) == service.get(key), key
        assert service.get(key), key


def test_unit_stop_timeouts_outlast_the_stops() -> None:
    # serve's whole stop (drain, then its broadcast worker's stop grace) before systemd kills it.
    assert STOP_SECONDS >= DRAIN_SECONDS + WORKER_STOP_SECONDS
    assert seconds(only(unit(SERVE_UNIT), "TimeoutStopSec")) > STOP_SECONDS
    assert seconds(only(unit(WORKER_UNIT), "TimeoutStopSec")) > WORKER_STOP_SECONDS


def test_durations_are_read_in_seconds() -> None:
    assert [seconds(text) for text in ("70", "70s", "1m30s", "1min 30s", "500ms")] == [70, 70, 90, 90, 0.5]


# --- serve drains on SIGTERM ------------------------------------------------------------------------

# Generous: a new interpreter importing the app, on a machine other tests share.
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.05
CHAT = 4242
# Longer than the test: the fake Bot API holds its answer until the test lets it go (closing the fake).
HELD_SECONDS = 600.0


async def _wait_for(condition: Callable[[], Awaitable[bool] | bool], what: str, errors: Path) -> None:
    """Polls without blocking the loop, on which the fake Bot API answers serve."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        done = condition()
        if done if isinstance(done, bool) else await done:
            return
        if time.monotonic() > deadline:
            stderr = errors.read_text()  # noqa: ASYNC240 - the test is failing: blocking no longer matters
            pytest.fail(f"gave up waiting for {what}; serve's stderr:\n{stderr}", pytrace=False)
        await asyncio.sleep(POLL_SECONDS)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_sigterm_lets_the_request_in_flight_finish_and_serve_exit_0(tmp_path: Path) -> None:
    """A Telegram update whose reply is still on its way to a slow Bot API when SIGTERM comes: serve
    stops accepting connections at once, waits for the Bot API, answers the update with 200 and only then
    exits, with 0. The slowness is the platform's (the fake holds its answer), not a hook in jianbao."""
    port = free_port()
    async with running_fake_telegram() as fake, aiohttp.ClientSession() as http:
        fake.faults(FaultPlan(rates={"slow": 1.0}, slow_seconds=HELD_SECONDS))
        env = {name: value for name, value in os.environ.items() if not name.startswith("JIANBAO_")}
        env |= {
            "JIANBAO_DATABASE_URL": sqlite_url(tmp_path / "serve.db"),
            "JIANBAO_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
            "JIANBAO_TELEGRAM_SECRET": TELEGRAM_SECRET,
            "JIANBAO_TELEGRAM_API_URL": fake.url,
        }
        errors = tmp_path / "serve.err"
        with errors.open("wb") as err:
            process = subprocess.Popen(  # noqa: ASYNC220 - starting it does not wait for it
                [str(jianbao_executable()), "serve", "--port", str(port)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        base = f"http://127.0.0.1:{port}"

        async def bot_running() -> bool:
            try:
                async with http.get(f"{base}/healthz") as response:
                    return bool((await response.json())["channels"]["telegram"] == "on")
            except aiohttp.ClientError:
                return False

        try:
            await _wait_for(bot_running, "serve and its bot to run", errors)
            update = asyncio.create_task(
                http.post(
                    f"{base}/telegram",
                    json=message_update(CHAT, "量化"),
                    headers={SECRET_HEADER: TELEGRAM_SECRET},
                )
            )
            await _wait_for(lambda: bool(fake.sent_to(CHAT)), "the reply to reach the Bot API", errors)

            process.send_signal(signal.SIGTERM)
            await _wait_for(lambda: not listening_sockets(port), "serve to stop listening", errors)
            assert _refused(port)
            # Draining: serve runs on, the update is in flight.
            assert process.poll() is None
            assert not update.done()

            await fake.close()  # the Bot API answers at last
            async with await update as response:
                assert response.status == 200, await response.text()
            await _wait_for(lambda: process.poll() is not None, "serve to exit", errors)
            assert process.returncode == 0, errors.read_text()
            assert "Traceback" not in errors.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
