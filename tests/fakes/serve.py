"""Run one fake platform server in a process of its own, for benchmarks and soak runs of the sender:

    python -m tests.fakes.serve telegram --port 0 --rate-limit --no-validate --no-record \\
        --faults 500=0.05,drop=0.03,slow=0.03 --seed 7 --slow-seconds 3
    python -m tests.fakes.serve wechat --port 0
    python -m tests.fakes.serve smtp --port 0 --stats-port 0

Run it from the project's root (it imports tests.fakes). Once listening it prints one line to stdout,
`ready URL` (`ready http://127.0.0.1:P`; for smtp `ready smtp://127.0.0.1:P`, followed by the stats URL
when --stats-port is given), with the real port when it was given 0, and serves until SIGTERM or SIGINT,
then exits 0. A separate process keeps the fake's own work off the sender's event loop, so what a
benchmark measures is the sender.

GET /_fake/stats answers the fake's counters as JSON (telegram and wechat on their own port, smtp on
--stats-port); the Telegram fake also takes POST /_fake/block {"chat_ids": [...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from aiohttp import web

from tests.fakes import smtp as smtp_fake
from tests.fakes import telegram_api, wechat_api
from tests.fakes.faults import DEFAULT_SLOW_SECONDS, FaultPlan
from tests.fakes.smtp import FakeSmtp, running_fake_smtp
from tests.fakes.telegram_api import TOKEN, running_fake_telegram
from tests.fakes.telegram_rules import MESSAGES_PER_SECOND, SECONDS_BETWEEN_MESSAGES_TO_A_CHAT
from tests.fakes.wechat_api import APPID, SECRET, running_fake_wechat

KNOWN_FAULTS = {"telegram": telegram_api.FAULTS, "wechat": wechat_api.FAULTS, "smtp": smtp_fake.FAULTS}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.serve", description=__doc__.split("\n")[0])
    platforms = parser.add_subparsers(dest="platform", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 (default): a free one")
    common.add_argument("--faults", default="", help="fault rates, e.g. 500=0.05,drop=0.03,slow=0.03")
    common.add_argument("--seed", type=int, default=0, help="seed of the fault plan")
    common.add_argument("--slow-seconds", type=float, default=DEFAULT_SLOW_SECONDS)
    common.add_argument("--retry-after", type=int, default=1, help="retry_after of an injected 429")
    common.add_argument(
        "--max-faults-per-key", type=int, default=None, help="faults one chat/user gets at most"
    )

    telegram = platforms.add_parser("telegram", parents=[common], help="the Bot API")
    telegram.add_argument("--token", default=TOKEN)
    telegram.add_argument("--rate-limit", action="store_true", help="apply Telegram's flood limits")
    telegram.add_argument("--per-second", type=float, default=MESSAGES_PER_SECOND)
    telegram.add_argument("--per-chat-seconds", type=float, default=SECONDS_BETWEEN_MESSAGES_TO_A_CHAT)
    telegram.add_argument("--no-validate", action="store_true", help="do not parse message HTML")
    telegram.add_argument("--no-record", action="store_true", help="keep counters only")

    wechat = platforms.add_parser("wechat", parents=[common], help="the Official Account API")
    wechat.add_argument("--appid", default=APPID)
    wechat.add_argument("--secret", default=SECRET)
    wechat.add_argument("--mass-quota", type=int, default=1)

    smtp = platforms.add_parser("smtp", parents=[common], help="an SMTP server (aiosmtpd)")
    smtp.add_argument("--no-record", action="store_true", help="keep counters only")
    smtp.add_argument("--stats-port", type=int, default=None, help="serve GET /_fake/stats on this port")
    return parser


def fault_plan(args: argparse.Namespace) -> FaultPlan | None:
    if not args.faults:
        return None
    return FaultPlan.parse(
        args.faults,
        seed=args.seed,
        slow_seconds=args.slow_seconds,
        retry_after=args.retry_after,
        max_per_key=args.max_faults_per_key,
    )


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        if args.platform == "telegram":
            telegram = await stack.enter_async_context(
                running_fake_telegram(
                    args.token, args.port, validate_html=not args.no_validate, record=not args.no_record
                )
            )
            if args.rate_limit:
                telegram.limit_rate(args.per_second, args.per_chat_seconds)
            telegram.faults(fault_plan(args))
            ready = telegram.url
        elif args.platform == "wechat":
            wechat = await stack.enter_async_context(
                running_fake_wechat(args.appid, args.secret, args.port, mass_quota=args.mass_quota)
            )
            wechat.faults(fault_plan(args))
            ready = wechat.url
        else:
            smtp = stack.enter_context(running_fake_smtp(args.port, record=not args.no_record))
            smtp.faults(fault_plan(args))
            ready = smtp.url
            if args.stats_port is not None:
                ready += " " + await stack.enter_async_context(_stats_server(smtp, args.stats_port))
        print(f"ready {ready}", flush=True)
        await stop.wait()


@asynccontextmanager
async def _stats_server(fake: FakeSmtp, port: int) -> AsyncIterator[str]:
    """GET /_fake/stats for the SMTP fake, which has no HTTP port of its own; yields its URL."""

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(fake.stats())

    app = web.Application()
    app.router.add_get("/_fake/stats", stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, real_port = runner.addresses[0][:2]
        yield f"http://{host}:{real_port}"
    finally:
        await runner.cleanup()


async def main_async(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(args, stop)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        # A malformed --faults is a usage error, reported before anything listens.
        plan = fault_plan(args)
        if plan is not None:
            plan.check(KNOWN_FAULTS[args.platform])
    except ValueError as error:
        print(f"--faults: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(main_async(args))
    except OSError as error:  # the port is taken, most likely
        print(json.dumps({"error": str(error)}), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
