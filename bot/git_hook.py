"""POST /hooks/git: the newsletter's Git repository reports a push, and the issues it changed are imported.

GitHub and Gitea sign every delivery with the webhook's secret: `X-Hub-Signature-256: sha256=<hex>`, the
HMAC-SHA256 of the raw body (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries;
Gitea sends the same header). The header's shape is checked before the body is read and the HMAC, in
constant time, before the body is parsed: without the secret a caller costs us one read of at most 1 MiB
(the app's body cap) and learns nothing. With no JIANBAO_GIT_REPO the hook does not exist (404); a
configured one needs a secret of WEBHOOK_SECRET_MIN_CHARS, or the service does not start.

Of the signed payload only three values are used: `ref` (a push to another ref than JIANBAO_GIT_BRANCH is
acknowledged, 202, and ignored), `before` and `after` (commit ids, 40 hex, checked before they reach git).
The files themselves come from our own clone, never from the payload: `git fetch` there, then the blobs
of `after` that `before` did not have (the whole tree of `after` when `before` is all zeros, a new branch,
or unknown to the clone, after a force push), each `*.md` under JIANBAO_GIT_ISSUE_DIR outside hidden
folders. Each is parsed in a thread and saved in its own transaction (IssueStore.save), as
`jianbao import` does: a bad file is reported with the parser's reason and leaves the stored issue as it
was. Each issue the push created or changed gets an audit entry (actor "git push", action "import",
detail "new"), by which the console shows it as new until an editor has looked at it.

The work is done within the request, so the sender's delivery log shows the outcome: pushes are taken one
at a time per app (a lock under GIT_PUSH_LOCK), git runs without a shell, a terminal or stdin and under a
timeout, and files not begun within IMPORT_BUDGET_SECONDS are reported as not imported rather than
holding the answer past the sender's patience. The answer is 200
`{"imported": [{"path", "date", "outcome"}], "failed": [{"path", "reason"}]}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
from asyncio.subprocess import DEVNULL, PIPE
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bot.admin import Unauthorized
from bot.importing import ISSUE_SUFFIX, FailedFile, ImportedFile, ImportReport, parse_source
from bot.services import SERVICES
from bot.settings import Settings
from content.errors import BadInput, Conflict, TooLarge, Unavailable
from content.parser import markdown_parser
from content.source import MAX_ISSUE_BYTES
from storage.audit import AuditTrail, issue_subject
from storage.issues import IssueStore, SaveOutcome

log = logging.getLogger(__name__)

HOOK_PATH = "/hooks/git"
SIGNATURE_HEADER = "X-Hub-Signature-256"
# GitHub names the event in X-GitHub-Event; Gitea sends that header too, and its own X-Gitea-Event.
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event")
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
# What Git puts for the missing side of a push: `before` of a new branch, `after` of a deleted one.
ZERO_COMMIT = "0" * 40
# A secret of 16 random characters is out of reach of guessing; shorter ones stop the service at start.
WEBHOOK_SECRET_MIN_CHARS = 16

# GitHub gives up on a delivery not answered within 10 s
# (https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks#respond-within-10-seconds);
# files not begun within this budget are reported as not imported. Gitea waits 5 s by default
# ([webhook] DELIVER_TIMEOUT) but, like aiohttp here, finishes the work when it stops waiting.
IMPORT_BUDGET_SECONDS = 8.0
# `git fetch` crosses the network; a fetch that takes longer is stopped and the push answered 503.
FETCH_TIMEOUT_SECONDS = 20.0
# The other git commands only read the local clone: milliseconds.
GIT_TIMEOUT_SECONDS = 10.0
# A push whose listing of changed files is larger than this, or that holds more issue files, is refused
# (413): that is a migration of the repository, for `jianbao import` on the clone.
MAX_LISTING_BYTES = 8 * 1024 * 1024
MAX_PUSH_FILES = 1000
# Of git's stderr, only the end is kept: the last line names the failure.
MAX_STDERR_BYTES = 8 * 1024
# Regular files in a Git tree (the other modes are symbolic links, submodules and folders).
REGULAR_FILE_MODES = frozenset({"100644", "100755"})
# Credentials in a remote's URL (https://user:token@host/...) must not reach an answer or a log.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")

PUSH_ACTOR = "git push"
IMPORT_ACTION = "import"
NEW_DETAIL = "new"

GIT_PUSH_LOCK = web.AppKey("git_push_lock", asyncio.Lock)


def check_git_settings(settings: Settings) -> None:
    """ValueError, for the operator at start, when the push webhook is configured but cannot be safe."""
    if not settings.git_repo:
        return
    secret = settings.git_webhook_secret.strip()
    if len(secret) < WEBHOOK_SECRET_MIN_CHARS:
        raise ValueError(
            f"JIANBAO_GIT_WEBHOOK_SECRET has {len(secret)} characters; the push webhook (JIANBAO_GIT_REPO) "
            f"needs one of at least {WEBHOOK_SECRET_MIN_CHARS} (try `openssl rand -hex 32`)"
        )
    if not Path(settings.git_repo).is_dir():
        raise ValueError(
            f"JIANBAO_GIT_REPO {settings.git_repo!r} is not a folder (a clone of the repository)"
        )
    if not settings.git_branch.strip():
        raise ValueError("JIANBAO_GIT_BRANCH is empty: name the branch whose pushes are imported")


def setup(app: web.Application) -> None:
    app[GIT_PUSH_LOCK] = asyncio.Lock()
    app.router.add_post(HOOK_PATH, receive_push)


@dataclass(frozen=True, slots=True)
class Push:
    ref: str
    before: str
    after: str


async def receive_push(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    settings = services.settings
    if not settings.git_repo:
        raise web.HTTPNotFound()
    given = _signature(request.headers.get(SIGNATURE_HEADER))
    if given is None:
        raise Unauthorized(f"{SIGNATURE_HEADER} missing or malformed (expected sha256=<64 hex digits>)")
    body = await request.read()  # at most the app's 1 MiB; beyond it aiohttp answers 413
    if not hmac.compare_digest(given, sign(settings.git_webhook_secret, body)):
        raise Unauthorized(f"{SIGNATURE_HEADER} does not match the body: check the webhook's secret")
    event = next((request.headers[name] for name in EVENT_HEADERS if name in request.headers), None)
    if event is None:
        raise BadInput(f"no {EVENT_HEADERS[0]} or {EVENT_HEADERS[1]} header")
    if event == "ping":
        return web.Response(text="pong\n")
    if event != "push":
        return web.Response(status=202, text="ignored: not a push event\n")
    push = read_push(body)
    branch_ref = f"refs/heads/{settings.git_branch}"
    if push.ref != branch_ref:
        return web.Response(status=202, text=f"ignored: not a push to {branch_ref}\n")
    if push.after == ZERO_COMMIT:
        return web.Response(status=202, text=f"ignored: {branch_ref} was deleted\n")
    async with request.app[GIT_PUSH_LOCK]:
        report = await import_push(
            Path(settings.git_repo),
            settings.git_issue_dir,
            push,
            services.storage.issues,
            AuditTrail(services.storage.database),
        )
    log.info(
        "git push %s..%s: %d imported, %d failed",
        push.before[:12],
        push.after[:12],
        len(report.imported),
        len(report.failed),
    )
    return web.json_response(
        {
            "imported": [
                {"path": done.path, "date": done.date, "outcome": done.outcome} for done in report.imported
            ],
            "failed": [{"path": failed.path, "reason": failed.reason} for failed in report.failed],
        }
    )


def sign(secret: str, body: bytes) -> bytes:
    """The hex HMAC-SHA256 of `body`, as GitHub and Gitea compute it (without the "sha256=")."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


def _signature(header: str | None) -> bytes | None:
    match = _SIGNATURE.fullmatch(header.strip()) if header else None
    return match.group(1).encode() if match else None


def read_push(body: bytes) -> Push:
    """The push event's ref and commits; BadInput naming what is missing or malformed."""
    try:
        data = json.loads(body)
    except ValueError:  # also not UTF-8 (UnicodeDecodeError is a ValueError)
        raise BadInput("the body is not JSON (set the webhook's content type to application/json)") from None
    except RecursionError:  # [[[[... nested a million deep fits in 1 MiB and exhausts the parser's stack
        raise BadInput("the body is nested too deeply to be a push event") from None
    if not isinstance(data, dict):
        raise BadInput("the body is not a push event (a JSON object with ref, before and after)")
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref:
        raise BadInput("the push event has no ref")
    return Push(ref=ref, before=_commit_id(data, "before"), after=_commit_id(data, "after"))


def _commit_id(data: dict[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not _COMMIT_ID.fullmatch(value):
        raise BadInput(f"the push event's {key} is not a commit id (40 lowercase hex digits)")
    return value


# --- the import -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Blob:
    path: str  # as the report and the parser name it (undecodable bytes replaced)
    mode: str
    blob: str


async def import_push(
    repo: Path, issue_dir: str, push: Push, store: IssueStore, audit: AuditTrail
) -> ImportReport:
    """Fetch, then import the issue files `push` added or changed; see the module's docstring."""
    await _git(
        repo, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", seconds=FETCH_TIMEOUT_SECONDS
    )
    if not await _has_commit(repo, push.after):
        raise Conflict(
            f"commit {push.after} is not in JIANBAO_GIT_REPO after git fetch: "
            "does the clone fetch from the repository that sent the push?"
        )
    files = [blob for blob in await _changed_blobs(repo, push) if _is_issue_file(blob.path, issue_dir)]
    if len(files) > MAX_PUSH_FILES:
        raise TooLarge(
            f"the push has {len(files):,} issue files; the hook imports at most {MAX_PUSH_FILES:,} "
            "(run `jianbao import` on the clone)"
        )
    report = ImportReport()
    md = markdown_parser()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + IMPORT_BUDGET_SECONDS
    for file in files:
        if loop.time() > deadline:
            reason = f"not imported: the push took over {IMPORT_BUDGET_SECONDS:.0f} s (redeliver it)"
            report.failed.append(FailedFile(file.path, reason))
            continue
        if file.mode not in REGULAR_FILE_MODES:
            report.failed.append(FailedFile(file.path, f"not a regular file (git mode {file.mode})"))
            continue
        try:
            data = await _git(repo, "cat-file", "blob", file.blob, limit=MAX_ISSUE_BYTES)
            issue, source = await asyncio.to_thread(parse_source, file.path, data, md)
            outcome = await store.save(issue, source.text)
        except _OutputTooLarge:
            report.failed.append(FailedFile(file.path, f"file too large (limit {MAX_ISSUE_BYTES:,} bytes)"))
            continue
        except BadInput as exc:
            report.failed.append(FailedFile(file.path, exc.message))
            continue
        if outcome is not SaveOutcome.UNCHANGED:
            await audit.record(PUSH_ACTOR, IMPORT_ACTION, issue_subject(issue.date), NEW_DETAIL)
        report.imported.append(
            ImportedFile(file.path, issue.date.isoformat(), str(outcome), issue.item_count)
        )
    return report


def _is_issue_file(path: str, issue_dir: str) -> bool:
    """A *.md file under `issue_dir` ("" for anywhere), outside hidden folders (as `jianbao import`)."""
    folder = issue_dir.strip("/")
    if folder:
        if not path.startswith(folder + "/"):
            return False
        path = path[len(folder) + 1 :]
    return path.endswith(ISSUE_SUFFIX) and not any(part.startswith(".") for part in path.split("/"))


async def _changed_blobs(repo: Path, push: Push) -> list[_Blob]:
    """The files of `after` that `before` did not have or had otherwise: renames count as new files."""
    if push.before == ZERO_COMMIT or not await _has_commit(repo, push.before):
        listing = await _listing(repo, "ls-tree", "-r", "-z", "--full-tree", push.after)
        blobs = []
        # Each file is "MODE TYPE OBJECT\tPATH\0".
        for record in listing.split(b"\0"):
            head, tab, path = record.partition(b"\t")
            parts = head.decode("ascii", "replace").split(" ")
            if tab and len(parts) == 3:
                blobs.append(_Blob(path.decode("utf-8", "replace"), parts[0], parts[2]))
        return blobs
    listing = await _listing(
        repo,
        "diff",
        "--raw",
        "-z",
        "--no-abbrev",
        "--no-renames",
        "--no-ext-diff",
        "--diff-filter=AM",
        push.before,
        push.after,
        "--",
    )
    # Each change is ":OLDMODE NEWMODE OLDBLOB NEWBLOB STATUS\0PATH\0".
    fields = listing.split(b"\0")
    blobs = []
    for head, path in zip(fields[0::2], fields[1::2], strict=False):
        parts = head.decode("ascii", "replace").split(" ")
        if len(parts) == 5:
            blobs.append(_Blob(path.decode("utf-8", "replace"), parts[1], parts[3]))
    return blobs


async def _listing(repo: Path, *args: str) -> bytes:
    try:
        return await _git(repo, *args, limit=MAX_LISTING_BYTES)
    except _OutputTooLarge:
        raise TooLarge(
            f"the push changes too many files for the hook (git's listing is over {MAX_LISTING_BYTES:,} "
            "bytes): run `jianbao import` on the clone"
        ) from None


async def _has_commit(repo: Path, commit: str) -> bool:
    code, _out, _err = await _run_git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
    return code == 0


# --- running git ------------------------------------------------------------------------------------


class _OutputTooLarge(Exception):
    """git wrote more than the caller's limit to stdout; the process was stopped."""


def _git_environment() -> dict[str, str]:
    # No terminal prompt for credentials (the fetch fails instead of waiting), and git's messages in
    # English whatever the server's locale, since they end up in answers and logs.
    return os.environ | {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


async def _git(
    repo: Path, *args: str, seconds: float = GIT_TIMEOUT_SECONDS, limit: int = MAX_LISTING_BYTES
) -> bytes:
    """stdout of `git ARGS` in `repo`; Unavailable (503) when it fails, naming git's last line."""
    code, out, err = await _run_git(repo, *args, seconds=seconds, limit=limit)
    if code != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        last = _URL_CREDENTIALS.sub("***@", lines[-1].strip())[:200] if lines else f"exit status {code}"
        raise Unavailable(f"git {args[0]} failed in JIANBAO_GIT_REPO: {last}")
    return out


async def _run_git(
    repo: Path, *args: str, seconds: float = GIT_TIMEOUT_SECONDS, limit: int = MAX_LISTING_BYTES
) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, the end of stderr) of `git ARGS`, run without a shell in `repo`.

    _OutputTooLarge past `limit` bytes of stdout, Unavailable past `seconds`; the process is killed then.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=repo,
            stdin=DEVNULL,
            stdout=PIPE,
            stderr=PIPE,
            env=_git_environment(),
        )
    except OSError as error:  # no git on the PATH, or the clone's folder is gone
        raise Unavailable(f"cannot run git in JIANBAO_GIT_REPO: {error.strerror or error}") from None
    assert process.stdout is not None  # PIPE gives both
    assert process.stderr is not None
    try:
        async with asyncio.timeout(seconds):
            out, err = await asyncio.gather(
                _read_capped(process.stdout, limit), _read_tail(process.stderr, MAX_STDERR_BYTES)
            )
            code = await process.wait()
    except TimeoutError:
        raise Unavailable(f"git {args[0]} did not finish within {seconds:.0f} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return code, out, err


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await stream.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise _OutputTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    tail = b""
    while chunk := await stream.read(64 * 1024):
        tail = (tail + chunk)[-keep:]
    return tail
