"""`jianbao broadcast send|status|stats|pause|resume|cancel|list` and `jianbao worker`."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bot.broadcast.control import BroadcastControl, DryRun, SendRequest, parse_date, parse_time
from bot.cli_common import emit_json, fail, run
from bot.services import open_storage
from bot.settings import Settings, load_settings
from channels.registry import ChannelRegistry, channel_registry
from content.errors import BadInput
from storage.broadcast_stats import BroadcastStats
from storage.broadcasts import Broadcast, BroadcastState, StartReport
from storage.database import Database

broadcast_app = typer.Typer(
    help="Send an issue to every subscriber, and follow or steer the sending.", no_args_is_help=True
)

ChannelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--channel", "-c", help="A registered channel; repeat for several (default: every one that can send)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@asynccontextmanager
async def _control(settings: Settings) -> AsyncIterator[BroadcastControl]:
    async with open_storage(settings) as storage:
        yield BroadcastControl(settings, storage.database)


@broadcast_app.command("send")
def send_command(
    date: Annotated[str, typer.Argument(help="The issue's date, YYYY-MM-DD.")],
    channel: ChannelOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would get what; send nothing.")
    ] = False,
    test_to: Annotated[
        str | None,
        typer.Option("--test-to", help="Send only to this address now (email, chat id or openid)."),
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="Start at this time (YYYY-MM-DD HH:MM[+08:00]).")
    ] = None,
    wechat_text: Annotated[
        bool,
        typer.Option(
            "--wechat-text", help="Also send the text to WeChat followers inside their 48 h window."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start the broadcast of an issue (starting it again only adds subscribers who joined since)."""
    settings = load_settings()
    try:
        day = parse_date(date)
        when = parse_time(at, settings) if at else None
    except BadInput as error:
        fail(f"broadcast send: {error.message}", code=2)
    if test_to is not None:
        run(_test_send(settings, day, test_to, channel or [], as_json))
        return
    request = SendRequest(day, tuple(channel or ()), when, wechat_text, dry_run)

    async def start() -> StartReport | DryRun:
        async with _control(settings) as control:
            return await control.send(request)

    outcome = run(start())
    if as_json:
        data = outcome.to_dict() if isinstance(outcome, DryRun) else _report_dict(outcome)
        emit_json(data)
        return
    console = Console()
    if isinstance(outcome, DryRun):
        console.print(f"[bold]dry run[/bold] {outcome.date}: nothing was sent")
        for name, counts in outcome.audience.items():
            console.print(f"  {name}: " + ", ".join(f"{key} {value:,}" for key, value in counts.items()))
        for name, sizes in outcome.payloads.items():
            console.print(f"  {name} payload: " + ", ".join(f"{key} {value}" for key, value in sizes.items()))
        return
    broadcast = outcome.broadcast
    verb = "started" if outcome.created else "already there; added"
    console.print(
        f"broadcast {broadcast.id} of {broadcast.issue_date} {verb}: {outcome.pending:,} to send, "
        f"{outcome.skipped:,} skipped; starts {broadcast.start_at.isoformat()}"
    )


def _report_dict(report: StartReport) -> dict[str, object]:
    return report.broadcast.to_dict() | {
        "created": report.created,
        "added_pending": report.pending,
        "added_skipped": report.skipped,
    }


async def _test_send(
    settings: Settings, day: object, address: str, channels: list[str], as_json: bool
) -> None:
    registry = channel_registry(settings.channel_plugins)
    try:
        channel = channels[0] if channels else _guess_channel(registry, address)
        address = registry.check_address(channel, address)
    except BadInput as error:
        fail(f"broadcast send --test-to: {error.message}", code=2)
    from bot.broadcast.runtime import open_worker  # here: the senders' libraries load only when needed

    async with open_storage(settings) as storage, open_worker(settings, storage.database) as parts:
        assert hasattr(day, "isoformat")
        result = await parts.worker.send_one(channel, address, day)  # type: ignore[arg-type]
    if as_json:
        emit_json({"channel": channel, "state": result.state.value, "error": result.error})
    else:
        Console().print(
            f"test send to {channel}: {result.state.value}" + (f" ({result.error})" if result.error else "")
        )
    if result.state.value != "sent":
        raise typer.Exit(1)


def _guess_channel(registry: ChannelRegistry, address: str) -> str:
    """The one registered channel whose address rules accept `address`."""
    accepting = []
    for channel in registry:
        try:
            channel.check_address(address)
        except BadInput:
            continue
        accepting.append(channel.name)
    if len(accepting) == 1:
        return accepting[0]
    if not accepting:
        raise BadInput(f"no channel takes {address[:40]!r} as an address")
    raise BadInput(
        f"{address[:40]!r} could be an address on {' or '.join(accepting)}: name one with --channel"
    )


def _steer(verb: str) -> None:
    @broadcast_app.command(verb)
    def command(
        reference: Annotated[str, typer.Argument(help="The issue's date (YYYY-MM-DD) or the broadcast id.")],
        as_json: JsonOption = False,
    ) -> None:
        async def act() -> Broadcast:
            async with _control(load_settings()) as control:
                broadcast = await control.find(reference)
                return await getattr(control.broadcasts, verb)(broadcast.id)  # type: ignore[no-any-return]

        broadcast = run(act())
        if as_json:
            emit_json(broadcast.to_dict())
        else:
            Console().print(f"broadcast {broadcast.id} of {broadcast.issue_date}: {broadcast.state.value}")

    command.__doc__ = {
        "pause": "Stop claiming new deliveries (those in flight finish).",
        "resume": "Continue a paused broadcast.",
        "cancel": "Skip every delivery not sent yet.",
    }[verb]


for _verb in ("pause", "resume", "cancel"):
    _steer(_verb)


@broadcast_app.command("status")
def status_command(
    reference: Annotated[str, typer.Argument(help="The issue's date (YYYY-MM-DD) or the broadcast id.")],
    as_json: JsonOption = False,
    watch: Annotated[
        bool | None,
        typer.Option("--watch/--no-watch", help="Live progress until done (default: on a terminal)."),
    ] = None,
) -> None:
    """Counts per channel and state, rate and ETA."""
    settings = load_settings()
    live = (sys.stdout.isatty() if watch is None else watch) and not as_json

    async def read() -> dict[str, object]:
        async with _control(settings) as control:
            broadcast = await control.find(reference)
            if live:
                await _watch(control, broadcast)
            return await control.status(await control.broadcasts.get(broadcast.id))

    status = run(read())
    if as_json:
        emit_json(status)
        return
    _print_status(status)


async def _watch(control: BroadcastControl, broadcast: Broadcast) -> None:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(f"{broadcast.issue_date}", total=None, rate="0.0")
        while True:
            status = await control.status(await control.broadcasts.get(broadcast.id))
            total = int(status["total"])  # type: ignore[call-overload]
            left = int(status["unfinished"])  # type: ignore[call-overload]
            progress.update(task, total=total, completed=total - left, rate=str(status["rate_per_second"]))
            if status["state"] != BroadcastState.RUNNING.value or left == 0:
                return
            await asyncio.sleep(1.0)


def _print_status(status: dict[str, object]) -> None:
    console = Console()
    console.print(
        f"broadcast {status['id']} of {status['date']}: [bold]{status['state']}[/bold] · "
        f"{status['rate_per_second']}/s · ETA {_eta(status['eta_seconds'])} · "
        f"maybe delivered {status['uncertain']}"
    )
    table = Table("channel", "pending", "sending", "sent", "failed", "skipped")
    counts = status["counts"]
    assert isinstance(counts, dict)
    for channel, states in counts.items():
        table.add_row(
            channel,
            *(f"{states.get(state, 0):,}" for state in ("pending", "sending", "sent", "failed", "skipped")),
        )
    console.print(table)


def _eta(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "unknown"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


@broadcast_app.command("stats")
def stats_command(
    reference: Annotated[str, typer.Argument(help="The issue's date (YYYY-MM-DD) or the broadcast id.")],
    as_json: JsonOption = False,
) -> None:
    """What a broadcast came to per channel (sent, failed, blocked, bounced, skipped, maybe delivered),
    its links' clicks, and unsubscribes within 7 days of its start."""
    settings = load_settings()

    async def read() -> dict[str, object]:
        async with open_storage(settings) as storage:
            control = BroadcastControl(settings, storage.database)
            broadcast = await control.find(reference)
            return await BroadcastStats(storage.database).report(broadcast)

    stats = run(read())
    if as_json:
        emit_json(stats)
        return
    _print_stats(stats)


# The figures of a channel, as `stats` prints them: (column, key).
_STATS_COLUMNS = (
    ("sent", "sent"),
    ("maybe delivered", "uncertain"),
    ("failed", "failed"),
    ("blocked", "blocked"),
    ("bounced", "bounced"),
    ("skipped", "skipped"),
    ("clicks", "clicks"),
    ("unique", "unique_clicks"),
)


def _print_stats(stats: dict[str, object]) -> None:
    console = Console()
    channels, links, unsubscribes = stats["channels"], stats["links"], stats["unsubscribes"]
    assert isinstance(channels, dict)
    assert isinstance(links, list)
    assert isinstance(unsubscribes, dict)
    console.print(
        f"broadcast of {stats['date']} · filtered clicks {stats['filtered_clicks']} · unsubscribed within "
        f"7 days: " + (", ".join(f"{name} {count:,}" for name, count in unsubscribes.items()) or "none")
    )
    table = Table("channel", *(column for column, _ in _STATS_COLUMNS))
    for channel, figures in channels.items():
        reached = sum(figures[key] for key in ("sent", "failed", "blocked", "bounced", "skipped"))
        table.add_row(channel, *(_count_and_rate(figures[key], reached) for _, key in _STATS_COLUMNS))
    console.print(table)
    if links:
        listed = Table("clicks", "unique", "section", "title", "url")
        for link in links:
            listed.add_row(
                f"{link['clicks']:,}",
                f"{link['unique_clicks']:,}",
                link["section"],
                link["title"],
                link["url"],
            )
        console.print(listed)


def _count_and_rate(count: int, total: int) -> str:
    return f"{count:,}" if not total else f"{count:,} ({count / total:.1%})"


@broadcast_app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """The latest broadcasts."""

    async def read() -> list[Broadcast]:
        async with _control(load_settings()) as control:
            return await control.broadcasts.list()

    broadcasts = run(read())
    if as_json:
        emit_json([broadcast.to_dict() for broadcast in broadcasts])
        return
    table = Table("id", "date", "state", "channels", "starts")
    for broadcast in broadcasts:
        table.add_row(
            str(broadcast.id),
            str(broadcast.issue_date),
            broadcast.state.value,
            " ".join(broadcast.channels),
            broadcast.start_at.isoformat(timespec="minutes"),
        )
    Console().print(table)


def worker_command(
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Exit when no running broadcast has anything left to send.")
    ] = False,
) -> None:
    """Send broadcasts: claim deliveries from the database and push them (run as many as you like)."""
    settings = load_settings()
    run(_work(settings, until_done))


async def _work(settings: Settings, until_done: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_storage(settings) as storage:
        await _run_worker(settings, storage.database, stop, until_done)


async def _run_worker(settings: Settings, database: Database, stop: asyncio.Event, until_done: bool) -> None:
    from bot.broadcast.runtime import open_worker  # here: the senders' libraries load only when needed

    async with open_worker(settings, database) as parts:
        if not parts.channels:
            fail(
                "worker: no channel can send "
                "(see JIANBAO_TELEGRAM_TOKEN, JIANBAO_SMTP_URL, JIANBAO_WECHAT_APPID)",
                code=2,
            )
        sys.stderr.write(f"jianbao worker {parts.worker.name}: sending on {', '.join(parts.channels)}\n")
        # What is built so far lives as long as the process: frozen, it is not re-scanned by every full
        # collection, whose 100-200 ms pauses would hold up sends already due (a message that goes out late
        # bunches with the next ones and can exceed Telegram's 30 a second). As `serve` does.
        gc.collect()
        gc.freeze()
        await parts.worker.run(stop, until_idle=until_done)
        sys.stderr.write(
            f"jianbao worker {parts.worker.name}: stopped after {parts.worker.sent:,} deliveries\n"
        )
