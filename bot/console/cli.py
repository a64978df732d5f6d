"""`jianbao editors ...`: the console's accounts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bot.cli_common import fail, run
from bot.console.passwords import hash_password
from bot.services import open_storage
from bot.settings import load_settings
from content.errors import BadInput
from storage.editors import EditorStore, check_editor_name

editors_app = typer.Typer(help="Editors: who may sign in to the console (/console).", no_args_is_help=True)


@editors_app.command("add")
def editors_add_command(
    name: Annotated[str, typer.Argument(help="The name to sign in with (no spaces).")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="JIANBAO_EDITOR_PASSWORD",
            help="Asked for when not given (or from JIANBAO_EDITOR_PASSWORD, for scripts).",
        ),
    ],
) -> None:
    """Add an editor; the password is asked for twice and kept only as an argon2 hash."""
    try:
        name = check_editor_name(name)
        password_hash = hash_password(password)
    except BadInput as error:
        fail(f"editors add: {error.message}", code=2)
    settings = load_settings()

    async def work() -> None:
        async with open_storage(settings) as storage:
            await EditorStore(storage.database).add(name, password_hash)

    run(work())
    sys.stdout.write(f"editor added: {name}\n")


@editors_app.command("list")
def editors_list_command() -> None:
    """The editors' names, one per line."""
    settings = load_settings()

    async def work() -> list[str]:
        async with open_storage(settings) as storage:
            return await EditorStore(storage.database).names()

    for name in run(work()):
        sys.stdout.write(f"{name}\n")
