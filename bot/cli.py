"""The `jianbao` command line: issues, subscribers, search, serve; broadcasts are in bot/broadcast/cli.py.

Every failure a user can cause ends in a one-line message on stderr and a non-zero exit status;
the exit codes are 1 for "some work failed" and 2 for "the command was used wrongly".
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.broadcast.audience import SKIP_TOPICS, TopicMatcher
from bot.cli_common import emit_json as _emit_json
from bot.cli_common import error_line as _error_line
from bot.cli_common import fail as _fail
from bot.cli_common import run as _run
from bot.importing import import_paths
from bot.rendering import Renderer
from bot.services import open_storage
from bot.settings import Settings, load_settings
from bot.subscriber_csv import (
    CSV_COLUMNS,
    NotCsv,
    NotUtf8,
    WrongHeader,
    csv_cells,
    decode_csv,
    parse_subscriber_csv,
    subscriber_record,
)
from channels.fitting import DoesNotFit
from channels.registry import ChannelRegistry, channel_registry
from content.demo import demo_issue_dir
from content.errors import BadInput, JianbaoError
from content.model import Issue
from storage.search.results import MAX_LIMIT, SearchResult, marking_pattern
from storage.subscribers import ImportRow, Subscriber, SubscriberStatus, SubscriberStore, normalise_topics

app = typer.Typer(
    name="jianbao",
    help="简报: hold, format and push a newsletter to WeChat, Telegram, email and work-chat robots.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
T = TypeVar("T")


@app.command("import")
def import_command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Issue files or folders (*.md, recursively).")
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Import the bundled demo issues.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import issues; a file already imported is replaced, or skipped when unchanged."""
    targets = list(paths or []) + ([demo_issue_dir()] if demo else [])
    if not targets:
        _fail("import: name at least one file or folder, or pass --demo", code=2)

    async def work() -> Any:
        async with open_storage(load_settings()) as storage:
            return await import_paths(targets, storage.issues)

    report = _run(work())
    for failed in report.failed:
        _error_line(f"import: {failed}")
    if as_json:
        _emit_json(
            {
                "imported": [vars_of(done) for done in report.imported],
                "failed": [{"path": bad.path, "reason": bad.reason} for bad in report.failed],
            }
        )
    else:
        Console().print(
            f"imported {len(report.imported)} file(s): {report.count('created')} new, "
            f"{report.count('replaced')} replaced, {report.count('unchanged')} unchanged; "
            f"{len(report.failed)} failed"
        )
    if not report.ok:
        raise typer.Exit(1)


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the stored issues, newest first."""

    async def work() -> Any:
        async with open_storage(load_settings()) as storage:
            return await storage.issues.list()

    summaries = _run(work())
    if as_json:
        _emit_json(
            [
                {
                    "date": summary.date.isoformat(),
                    "title": summary.title,
                    "headline": summary.headline,
                    "items": summary.item_count,
                    "sections": [{"name": name, "items": count} for name, count in summary.section_counts],
                }
                for summary in summaries
            ]
        )
        return
    table = Table(title=f"{len(summaries)} issues", title_justify="left")
    table.add_column("date")
    table.add_column("title")
    table.add_column("items", justify="right")
    table.add_column("sections")
    for summary in summaries:
        title = summary.title + (f" {summary.headline}" if summary.headline else "")
        sections = " · ".join(f"{name} {count}" for name, count in summary.section_counts)
        table.add_row(summary.date.isoformat(), Text(title), str(summary.item_count), Text(sections))
    Console().print(table)


@app.command("show")
def show_command(
    date: Annotated[str, typer.Argument(help="The issue's date, YYYY-MM-DD, or 'latest'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole issue as JSON.")] = False,
) -> None:
    """Show one issue: its sections and items."""
    wanted = _date_argument("show", date)

    async def work() -> Issue | None:
        async with open_storage(load_settings()) as storage:
            return await (storage.issues.latest() if wanted is None else storage.issues.get(wanted))

    issue = _run(work())
    if issue is None:
        _fail(f"show: no issue dated {date}" if wanted else "show: no issues imported yet", code=1)
        return
    if as_json:
        _emit_json(issue.to_dict())
        return
    _print_issue(issue, Console())


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="Keywords, e.g. 量化, 剪枝, NPU, 'int8 量化'.")],
    limit: Annotated[int, typer.Option("--limit", help=f"How many results (1-{MAX_LIMIT}).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the items of past issues about a keyword, best first, in Chinese or English."""
    if not 1 <= limit <= MAX_LIMIT:
        _fail(f"search: --limit must be between 1 and {MAX_LIMIT}, not {limit}", code=2)

    async def work() -> SearchResult:
        # Imported here, not at the top: every command loads this module, and the search engine (~45 MB of
        # tantivy, rjieba and OpenCC) would otherwise sit in each `jianbao worker` that never searches.
        from storage.search.follow import refresh_index
        from storage.search.index import SearchIndex

        async with open_storage(load_settings()) as storage:
            index = SearchIndex()
            await refresh_index(index, storage.issues)
            return index.search(query, limit=limit)

    result = _run(work())
    if as_json:
        _emit_json(result.to_dict())
        return
    console = Console()
    if result.hint:
        console.print(Text(result.hint, style="yellow"))
    if result.hits:
        console.print(
            Text(f"{result.total} items match {query!r}; the best {len(result.hits)}:", style="dim")
        )
    for rank, hit in enumerate(result.hits, start=1):
        # The words the archive's search page marks, by the same rule (not every word of hit.matched:
        # that would light up the 8 of every version number for int8).
        marked = marking_pattern(hit.matched, query)
        title = Text(f"{rank:>2}. {hit.title}", style="bold")
        snippet = Text(f"    {hit.snippet}")
        if marked is not None:
            title.highlight_regex(marked, style="reverse")
            snippet.highlight_regex(marked, style="bold yellow")
        console.print(title, Text(f"  {hit.date.isoformat()} · {hit.section}", style="dim"))
        console.print(snippet)
        if hit.url:
            console.print(Text(f"    {hit.url}", style="blue"))


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", help="Processes sharing the port (one per core).")] = 1,
) -> None:
    """Run the service: webhooks, sign-up pages, the issue archive and the feed."""
    from bot.admin import check_admin_token
    from bot.app import channel_status, channel_warnings, sending_status
    from bot.git_hook import check_git_settings
    from bot.serving import serve

    settings = load_settings()
    try:
        check_admin_token(settings)
        check_git_settings(settings)
    except ValueError as exc:
        _fail(f"serve: {exc}", code=1)
    database = settings.database_url.split("@")[-1] if settings.database_url else "SQLite ./var/jianbao.db"
    console = Console()
    console.print(Text(f"jianbao on http://{host}:{port}  ·  database: {database}", style="bold"))
    for feature, reason in channel_status(settings).items():
        console.print(Text(f"  {feature:9s} {reason or 'on'}", style="dim" if reason else "green"))
    sending = sending_status(settings, _registry("serve", settings))
    console.print(Text("  broadcasts:", style="bold"))
    for channel, reason in sending.items():
        console.print(Text(f"  {channel:9s} {reason or 'sends'}", style="dim" if reason else "green"))
    for warning in channel_warnings(settings):
        console.print(Text(f"  warning: {warning}", style="yellow"))
    console.print(Text(f"  try: http://{host}:{port}/issues  ·  .venv/bin/jianbao search 量化", style="dim"))
    try:
        serve(settings, host, port, workers)
    except OSError as exc:
        _fail(f"serve: cannot listen on {host}:{port}: {exc.strerror or exc}", code=1)
    except (JianbaoError, ValueError) as exc:  # a setting the service cannot start with (e.g. a bad AES key)
        _fail(f"serve: {exc}", code=1)


@app.command("render")
def render_command(
    date: Annotated[str, typer.Argument(help="The issue's date, YYYY-MM-DD, or 'latest'.")],
    channel: Annotated[
        str, typer.Option("--channel", help="A registered channel: wechat, telegram, email, ...")
    ],
    max_messages: Annotated[
        int | None,
        typer.Option(
            "--max-messages", help="Fit the issue in at most N messages (channels that send several)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the payload as JSON.")] = False,
    topics: Annotated[
        str | None,
        typer.Option(
            "--topics",
            help="What a reader with these topics gets (comma-separated, e.g. 量化,剪枝): "
            "nothing when the issue is not about them, else their items first.",
        ),
    ] = None,
) -> None:
    """Show what an issue looks like on a channel, exactly as it would be sent."""
    settings = load_settings()
    channels = _registry("render", settings)
    if channel not in channels:
        _fail(f"render: --channel must be one of {', '.join(channels.names)}, not {channel!r}", code=2)
    if max_messages is not None and (not channels.get(channel).fits_messages or max_messages < 1):
        several = ", ".join(found.name for found in channels if found.fits_messages)
        _fail(
            f"render: --max-messages takes a number of 1 or more, and only with --channel {several}", code=2
        )
    wanted = _date_argument("render", date)
    try:
        chosen = normalise_topics([topics]) if topics else ()
    except BadInput as exc:
        _fail(f"render: --topics: {exc}", code=2)
        return

    async def work() -> Issue | None:
        async with open_storage(settings) as storage:
            return await (storage.issues.latest() if wanted is None else storage.issues.get(wanted))

    issue = _run(work())
    if issue is None:
        _fail(f"render: no issue dated {date}" if wanted else "render: no issues imported yet", code=1)
        return
    focus: tuple[tuple[int, int], ...] = ()
    reader: dict[str, object] | None = None
    if chosen:
        matcher = TopicMatcher(issue)
        if not any(matcher.matches(topic) for topic in chosen):
            reader = {"topics": list(chosen), "receives": False, "reason": SKIP_TOPICS}
            if as_json:
                _emit_json({"channel": channel, "date": issue.date.isoformat(), "reader": reader})
            else:
                named = ", ".join(chosen)
                sys.stdout.write(f"A reader with the topics {named} gets nothing: {SKIP_TOPICS}.\n")
            return
        focus = matcher.focus(chosen)
        reader = {
            "topics": list(chosen),
            "receives": True,
            "focus": [issue.sections[at].items[index].title for at, index in focus],
        }
    try:
        rendered = Renderer(settings, channels).render(issue, channel, max_messages=max_messages, focus=focus)
    except (DoesNotFit, BadInput) as exc:
        _fail(f"render: {exc}", code=1)
        return
    if as_json:
        payload = rendered.to_dict()
        if reader is not None:
            payload["reader"] = reader
        _emit_json(payload)
    else:
        sys.stdout.write(rendered.preview() + "\n")


def _registry(command: str, settings: Settings) -> ChannelRegistry:
    try:
        return channel_registry(settings.channel_plugins)
    except ValueError as exc:
        _fail(f"{command}: {exc}", code=1)
        raise AssertionError("unreachable") from None


def _date_argument(command: str, date: str) -> dt.date | None:
    if date == "latest":
        return None
    try:
        return dt.date.fromisoformat(date)
    except ValueError:
        _fail(f"{command}: {date!r} is not a date (expected YYYY-MM-DD or 'latest')", code=2)
        raise AssertionError("unreachable") from None


def _print_issue(issue: Issue, console: Console) -> None:
    console.print(Text(issue.title, style="bold"), Text(issue.headline or "", style="cyan"))
    if issue.tagline:
        console.print(Text(issue.tagline, style="italic"))
    if issue.lead:
        console.print(Text(f"导读：{issue.lead}", style="dim"))
    if issue.quick_news:
        console.print(Text(f"\n热身小新闻 ({len(issue.quick_news)})", style="bold"))
        for news in issue.quick_news:
            console.print(Text(f"  • {news.text}"))
    for section in issue.sections:
        console.print(Text(f"\n## {section.name} ({len(section.items)})", style="bold magenta"))
        for item in section.items:
            line = Text(f"{item.position:>3}. ")
            if item.tags:
                line.append(" ".join(f"[{tag}]" for tag in item.tags) + " ", style="yellow")
            line.append(item.title, style="bold")
            if item.source:
                line.append(f" | {item.source}", style="green")
            console.print(line)
            if item.url:
                console.print(Text(f"      {item.url}", style="blue"))


# --- subscribers -------------------------------------------------------------------------------------

subscribers_app = typer.Typer(
    name="subscribers",
    help="The subscribers of every channel: add, remove, erase, list, import from CSV, export.",
    no_args_is_help=True,
)
app.add_typer(subscribers_app, name="subscribers")

# CSV columns (bot/subscriber_csv.py): import reads `status` and `secret`; export writes no secret.


# Who the audit trail says erased a subscriber from the command line.
ERASE_ACTOR = "cli"
# Telegram group ids are negative: let "-100123" through as an argument rather than an unknown option.
_NEGATIVE_IDS = {"ignore_unknown_options": True}


@subscribers_app.command("add", context_settings=_NEGATIVE_IDS)
def subscribers_add_command(
    channel: Annotated[str, typer.Argument(help="A registered channel: wechat, telegram, email, ...")],
    address: Annotated[str, typer.Argument(help="An openid, a chat id, an email address, a robot's URL.")],
    topics: Annotated[str | None, typer.Option("--topics", help="Topics, comma-separated: 量化,NPU.")] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="The address's signing secret (a Feishu robot's).")
    ] = None,
) -> None:
    """Add a subscriber (active at once), or bring back one who left; --topics replaces their topics."""
    settings = load_settings()
    channels = _registry("add", settings)
    address = _subscriber_input("add", lambda: channels.check_address(channel, address))
    key = _subscriber_input("add", lambda: channels.get(channel).check_secret(secret))
    wanted = _subscriber_input("add", lambda: normalise_topics([topics or ""]))

    async def work() -> tuple[Subscriber, str]:
        async with open_storage(settings) as storage:
            store = SubscriberStore(storage.database, keys=channels.address_key)
            found = await store.get(channel, address)
            row, changed = await store.subscribe(channel, address, topics=wanted, secret=key)
            outcome = "already active" if not changed else "added" if found is None else "brought back"
            if topics is not None and row.topics != wanted:
                await store.set_topics(channel, address, wanted)
                outcome = outcome if changed else "topics updated"
            return row, outcome

    row, outcome = _run(work())
    sys.stdout.write(f"{outcome}: {row.channel} {row.address} (id {row.id})\n")


@subscribers_app.command("remove", context_settings=_NEGATIVE_IDS)
def subscribers_remove_command(
    channel: Annotated[str, typer.Argument(help="A registered channel: wechat, telegram, email, ...")],
    address: Annotated[str, typer.Argument(help="An openid, a chat id, an email address, a robot's URL.")],
) -> None:
    """Unsubscribe someone; the row stays, marked unsubscribed, so the history is kept."""
    settings = load_settings()
    channels = _registry("remove", settings)
    address = _subscriber_input("remove", lambda: channels.check_address(channel, address))

    async def work() -> bool:
        async with open_storage(settings) as storage:
            return await SubscriberStore(storage.database, keys=channels.address_key).unsubscribe(
                channel, address
            )

    if not _run(work()):
        _fail(f"remove: {channel} {address} is not subscribed", code=1)
    sys.stdout.write(f"removed: {channel} {address}\n")


@subscribers_app.command("erase", context_settings=_NEGATIVE_IDS)
def subscribers_erase_command(
    channel: Annotated[str, typer.Argument(help="A registered channel: wechat, telegram, email, ...")],
    address: Annotated[str, typer.Argument(help="An openid, a chat id, an email address, a robot's URL.")],
) -> None:
    """Erase someone completely (a privacy request): their row and deliveries are deleted, their address is
    cut out of every other record, and the audit trail keeps "erase, subscriber ID" without it."""
    settings = load_settings()
    channels = _registry("erase", settings)
    address = _subscriber_input("erase", lambda: channels.check_address(channel, address))

    async def work() -> bool:
        async with open_storage(settings) as storage:
            store = SubscriberStore(storage.database, keys=channels.address_key)
            return await store.erase(channel, address, actor=ERASE_ACTOR)

    if not _run(work()):
        _fail(f"erase: no such subscriber: {channel} {address}", code=1)
    # The address is not echoed: what a terminal's scrollback keeps is a record too.
    sys.stdout.write(f"erased: one {channel} subscriber\n")


@subscribers_app.command("list")
def subscribers_list_command(
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status, e.g. active.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List subscribers in the order they came."""
    rows = _all_subscribers("list", channel, status)
    if as_json:
        _emit_json([subscriber_record(row) for row in rows])
        return
    table = Table(title=f"{len(rows)} subscribers", title_justify="left")
    for column in ("id", "channel", "address", "status", "topics", "since"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for row in rows:
        since = row.left_at or row.confirmed_at or row.created_at
        table.add_row(
            str(row.id),
            row.channel,
            Text(row.address),
            row.status,
            Text(" ".join(row.topics)),
            f"{since:%Y-%m-%d}",
        )
    Console().print(table)


@subscribers_app.command("export")
def subscribers_export_command(
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of CSV.")] = False,
) -> None:
    """Write every subscriber to stdout, as CSV (the columns `import` reads first) or JSON."""
    rows = _all_subscribers("export", None, None)
    if as_json:
        _emit_json([subscriber_record(row) for row in rows])
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_cells(row) for row in rows)


@subscribers_app.command("import")
def subscribers_import_command(
    path: Annotated[Path, typer.Argument(help="A UTF-8 CSV file with the header channel,address,topics.")],
) -> None:
    """Add the subscribers of a CSV file (active at once). A bad row is reported by its line number and
    skipped; the rest are imported. Nobody who left (unsubscribed, blocked, bounced) is brought back."""
    settings = load_settings()
    channels = _registry("import", settings)
    rows, bad = _read_subscriber_csv(path, channels)

    async def work() -> Counter[str]:
        async with open_storage(settings) as storage:
            store = SubscriberStore(storage.database, keys=channels.address_key)
            return Counter(await store.import_active([row for _, row in rows]))

    outcomes = _run(work())
    for line, reason in bad:
        _error_line(f"subscribers import: line {line}: {reason}")
    sys.stdout.write(
        f"imported {len(rows)} row(s): {outcomes['new']} new, {outcomes['updated']} updated, "
        f"{outcomes['unchanged']} unchanged, {outcomes['left']} who had left kept out; "
        f"{len(bad)} bad row(s)\n"
    )
    if bad:
        raise typer.Exit(1)


def _read_subscriber_csv(
    path: Path, channels: ChannelRegistry
) -> tuple[tuple[tuple[int, ImportRow], ...], tuple[tuple[int, str], ...]]:
    """The good rows of a subscriber CSV and the bad ones as (line, reason) (bot/subscriber_csv.py)."""
    try:
        parsed = parse_subscriber_csv(decode_csv(path.read_bytes()), channels)
    except OSError as exc:
        _fail(f"import: cannot read {path}: {exc.strerror or exc}", code=1)
    except NotUtf8:
        _fail(f"import: {path} is not UTF-8 text", code=1)
    except NotCsv:
        _fail(f"import: {path} is empty or its first line is not CSV", code=1)
    except WrongHeader:
        _fail(f"import: the first line of {path} must be the header channel,address,topics", code=2)
    else:
        return parsed.rows, parsed.bad
    raise AssertionError("unreachable")


def _subscriber_input(command: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except BadInput as exc:
        _fail(f"{command}: {exc.message}", code=2)
        raise AssertionError("unreachable") from None


def _all_subscribers(command: str, channel: str | None, status: str | None) -> list[Subscriber]:
    channels = _registry(command, load_settings())
    if channel is not None and channel not in channels:
        _fail(f"{command}: --channel must be one of {', '.join(channels.names)}, not {channel!r}", code=2)
    statuses = [str(value) for value in SubscriberStatus]
    if status is not None and status not in statuses:
        _fail(f"{command}: --status must be one of {', '.join(statuses)}, not {status!r}", code=2)

    async def work() -> list[Subscriber]:
        found: list[Subscriber] = []
        async with open_storage(load_settings()) as storage:
            store = SubscriberStore(storage.database)
            wanted = None if status is None else SubscriberStatus(status)
            while page := await store.list(
                channel=channel, status=wanted, after_id=found[-1].id if found else 0
            ):
                found.extend(page)
        return found

    return _run(work())


def _broadcast_commands() -> None:
    # Imported here: bot.broadcast.cli uses bot.cli_common, like this module, and nothing of this one.
    from bot.broadcast.cli import broadcast_app, worker_command

    app.add_typer(broadcast_app, name="broadcast")
    app.command("worker")(worker_command)


_broadcast_commands()


def _editor_commands() -> None:
    from bot.console.cli import editors_app

    app.add_typer(editors_app, name="editors")


_editor_commands()


def main() -> None:
    app()
