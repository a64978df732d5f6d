"""What every command of the command line shares: running a coroutine, one-line errors, JSON output."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer

from content.errors import JianbaoError

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except JianbaoError as exc:
        fail(str(exc), code=1)


def error_line(message: str) -> None:
    # Plain writes, not rich: rich wraps at 80 columns when stderr is not a terminal, and every error
    # must stay one line for whoever reads the log.
    sys.stderr.write(f"jianbao: {' '.join(message.split())}\n")


def fail(message: str, code: int) -> NoReturn:
    error_line(message)
    raise typer.Exit(code)


def emit_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
