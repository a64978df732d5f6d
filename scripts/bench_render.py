"""How long rendering one issue for each channel takes, first call and after.

    .venv/bin/python scripts/bench_render.py [--date 2020-07-02] [--repeat 200] [--channels a,b]

In-process, from a parsed issue, with a public URL and click tracking on (the most work), through the
channel registry as the worker and `render` call it: the document is built per channel (links
rewritten), then each registered channel renders (Telegram's messages, also as a one-message digest;
the WeChat article and text; the email, HTML with CSS inlined; the WeCom and Feishu robots' messages).
"all three channels" sums Telegram, WeChat and email, the figure kept from before the registry.
Also prints what one email personalisation costs, the per-subscriber part of a broadcast.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

from bot.rendering import Renderer
from bot.settings import Settings
from channels.email.render import render_email
from content.demo import demo_issue_dir
from content.parser import parse_issue
from content.source import read_issue_file


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--date", default="2020-07-02")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument(
        "--channels",
        default="",
        help="comma-separated channels to render (default: every registered one); "
        "telegram,wechat,email times the same work as before the registry",
    )
    args = parser.parse_args()
    issue = parse_issue(read_issue_file(demo_issue_dir() / f"{args.date}.md"))
    settings = Settings(public_url="https://jianbao.example", secret_key="bench", track_links=True)

    started = time.perf_counter()
    renderer = Renderer(settings)
    # Every registered channel through the registry (what the worker and `render` call), and the digest.
    names = [name for name in args.channels.split(",") if name] or list(renderer.channels.names)
    steps: dict[str, Callable[[], object]] = {
        name: functools.partial(renderer.render, issue, name) for name in names
    }
    steps["telegram 1 message"] = functools.partial(renderer.render, issue, "telegram", max_messages=1)
    three = ("telegram", "wechat", "email")
    for step in steps.values():
        step()
    first = time.perf_counter() - started
    timings: dict[str, list[float]] = {name: [] for name in steps}
    totals = []
    for _ in range(args.repeat):
        for name, step in steps.items():
            mark = time.perf_counter()
            step()
            timings[name].append((time.perf_counter() - mark) * 1000)
        totals.append(sum(timings[name][-1] for name in three))
    template = render_email(renderer.document(issue, "email"), mail_from=settings.mail_from)
    personalize = []
    for number in range(args.repeat):
        mark = time.perf_counter()
        template.personalize(
            to=f"reader{number}@example.com", unsubscribe_url=f"https://jianbao.example/unsubscribe/t{number}"
        )
        personalize.append((time.perf_counter() - mark) * 1000)
    print(f"issue {args.date}: {issue.item_count} items; first call: {first * 1000:.0f} ms")
    for name, values in timings.items():
        p95 = sorted(values)[int(len(values) * 0.95)]
        print(f"  {name:20s} median {statistics.median(values):6.2f} ms   p95 {p95:6.2f} ms")
    label = "all three channels"
    print(f"  {label:20s} median {statistics.median(totals):6.2f} ms   max {max(totals):6.2f} ms")
    print(f"  email personalisation median {statistics.median(personalize):.2f} ms per subscriber")


if __name__ == "__main__":
    main()
