"""POST /hooks/git against real Git repositories and real databases.

Each test has an upstream (a bare repository, standing for GitHub), an editor's clone that commits and
pushes to it, and the service's own clone (JIANBAO_GIT_REPO), which only the hook's `git fetch` updates.
A push is announced as GitHub announces it: the JSON payload, signed with the webhook's secret. Refused
deliveries are checked to have done no work: the service's clone has fetched nothing (no FETCH_HEAD, its
refs as they were) and the database holds no issue and no audit entry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot import git_hook
from bot.app import create_app
from bot.git_hook import HOOK_PATH, WEBHOOK_SECRET_MIN_CHARS, ZERO_COMMIT
from bot.services import SERVICES, Services
from bot.settings import Settings
from content.errors import IssueFormatError
from content.parser import parse_issue
from content.source import MAX_ISSUE_BYTES, decode_issue
from storage.audit import AuditEntry, AuditTrail
from tests.bot.helpers import DEMO_DIR, minimal_issue, postgres_database, sqlite_url
from tests.conftest import BACKENDS

Client = TestClient[web.Request, web.Application]

SECRET = "a-webhook-secret-0123456789abcdef"
ISSUE_DIR = "embedded-ai-report"
DEMO_DATE = "2020-07-02"
# The repository's first commit: a README.md, which is a *.md file but no issue.
README = "# 嵌入式AI简报的仓库\n\n每两周一期。\n".encode()
# Git as the editor runs it, without the machine's own configuration.
GIT_ENV = os.environ | {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=编辑", "-c", "user.email=editor@example.com", *args],
        cwd=folder,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass(frozen=True)
class Repos:
    upstream: Path
    editor: Path
    clone: Path

    def commit(self, files: dict[str, bytes | None], message: str = "更新") -> str:
        """Write (or, for None, delete) files in the editor's clone, commit, push; the new commit's id."""
        for name, data in files.items():
            path = self.editor / name
            if data is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        git(self.editor, "add", "--all")
        git(self.editor, "commit", "--quiet", "-m", message)
        git(self.editor, "push", "--quiet", "origin", "HEAD")
        return self.head()

    def head(self) -> str:
        return git(self.editor, "rev-parse", "HEAD")

    def clone_state(self) -> tuple[bool, str]:
        """Whether the service's clone ever fetched, and its refs: what a refused delivery leaves alone."""
        fetched = (self.clone / ".git" / "FETCH_HEAD").exists()
        return fetched, git(self.clone, "for-each-ref", "--format=%(refname) %(objectname)")


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    upstream, editor, clone = tmp_path / "upstream.git", tmp_path / "editor", tmp_path / "clone"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(upstream))
    git(tmp_path, "clone", "--quiet", str(upstream), str(editor))
    git(editor, "checkout", "--quiet", "-B", "main")
    made = Repos(upstream, editor, clone)
    made.commit({"README.md": README}, "开始")
    git(tmp_path, "clone", "--quiet", str(upstream), str(clone))
    return made


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of the service's own (the app takes a URL, not the tests' per-test schema)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "hook.db")
    else:
        async with postgres_database() as url:
            yield url


@asynccontextmanager
async def service(database: str, repos: Repos | None, **settings: Any) -> AsyncIterator[Client]:
    if repos is not None:
        settings = {"git_repo": str(repos.clone), "git_webhook_secret": SECRET} | settings
    app = create_app(Settings(database_url=database, **settings))
    async with TestClient(TestServer(app)) as client:
        yield client


def services(client: Client) -> Services:
    app = client.app
    assert app is not None
    return app[SERVICES]


def payload(before: str, after: str, ref: str = "refs/heads/main", **extra: Any) -> bytes:
    """A push event shaped as GitHub sends it (the hook reads ref, before and after)."""
    document = {
        "ref": ref,
        "before": before,
        "after": after,
        "created": before == ZERO_COMMIT,
        "deleted": after == ZERO_COMMIT,
        "forced": False,
        "repository": {"full_name": "editors/embedded-ai-report", "default_branch": "main"},
        "pusher": {"name": "编辑", "email": "editor@example.com"},
        "commits": [{"id": after, "message": "更新", "added": [], "modified": [], "removed": []}],
    } | extra
    return json.dumps(document, ensure_ascii=False).encode()


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(
    client: Client,
    body: bytes,
    *,
    event: str | None = "push",
    signed: str | None = None,
    event_header: str = "X-GitHub-Event",
) -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    headers["X-Hub-Signature-256"] = signature(body) if signed is None else signed
    if not headers["X-Hub-Signature-256"]:
        del headers["X-Hub-Signature-256"]
    if event is not None:
        headers[event_header] = event
    response = await client.post(HOOK_PATH, data=io.BytesIO(body), headers=headers)
    if response.content_type == "application/json":
        return response.status, await response.json()
    return response.status, await response.text()


async def audit_entries(client: Client) -> list[AuditEntry]:
    return await AuditTrail(services(client).storage.database).recent()


def demo_bytes(date: str = DEMO_DATE) -> bytes:
    return (DEMO_DIR / f"{date}.md").read_bytes()


def parser_reason(name: str, data: bytes) -> str:
    """What the parser itself says of a broken file (its message, with the line where it gives one)."""
    with pytest.raises(IssueFormatError) as caught:
        parse_issue(decode_issue(data, name))
    return caught.value.message


# --- importing ------------------------------------------------------------------------------------


async def test_a_push_imports_the_issue_and_marks_it_new(database_url: str, repos: Repos) -> None:
    before = repos.head()
    path = f"{ISSUE_DIR}/{DEMO_DATE}.md"
    after = repos.commit({path: demo_bytes()})
    assert repos.clone_state()[0] is False
    async with service(database_url, repos) as client:
        status, answer = await deliver(client, payload(before, after))
        assert (status, answer) == (
            200,
            {"imported": [{"path": path, "date": DEMO_DATE, "outcome": "created"}], "failed": []},
        )
        store = services(client).storage.issues
        assert await store.source_text(dt.date.fromisoformat(DEMO_DATE)) == demo_bytes().decode("utf-8")
        entries = await audit_entries(client)
        assert [(e.actor, e.action, e.subject, e.detail) for e in entries] == [
            ("git push", "import", f"issue {DEMO_DATE}", "new")
        ]
        assert entries[0].at.tzinfo is not None
        assert dt.datetime.now(dt.UTC) - entries[0].at < dt.timedelta(minutes=1)
        # The clone was fetched, not checked out: its working tree is the editor's business, not ours.
        fetched, refs = repos.clone_state()
        assert fetched
        assert f"refs/remotes/origin/main {after}" in refs
        assert not (repos.clone / path).exists()

        # GitHub's "Redeliver": the same issue again is unchanged, and not new once more.
        status, answer = await deliver(client, payload(before, after))
        assert (status, answer["imported"]) == (
            200,
            [{"path": path, "date": DEMO_DATE, "outcome": "unchanged"}],
        )
        assert len(await audit_entries(client)) == 1


async def test_a_broken_version_fails_with_the_parser_reason_and_keeps_the_stored_one(
    database_url: str, repos: Repos
) -> None:
    path = f"{ISSUE_DIR}/2030-01-02.md"
    good = minimal_issue("2030-01-02").encode()
    # The title line survives but the sections are gone: the parser names the line it stopped at.
    broken = "# 嵌入式AI简报 (2030-01-02)：测试用的简报\n\n> 导读：只剩导读。\n".encode()
    reason = parser_reason(path, broken)
    assert "line 1" in reason
    assert "no sections" in reason
    first = repos.head()
    second = repos.commit({path: good})
    third = repos.commit({path: broken})
    async with service(database_url, repos) as client:
        status, answer = await deliver(client, payload(first, second))
        assert (status, answer["imported"][0]["outcome"]) == (200, "created")
        status, answer = await deliver(client, payload(second, third))
        assert (status, answer) == (200, {"imported": [], "failed": [{"path": path, "reason": reason}]})
        store = services(client).storage.issues
        assert await store.source_text(dt.date(2030, 1, 2)) == good.decode()
        assert len(await audit_entries(client)) == 1  # the failed version is not new


async def test_a_push_of_several_files_imports_each_on_its_own(database_url: str, repos: Repos) -> None:
    before = repos.head()
    after = repos.commit(
        {
            f"{ISSUE_DIR}/2030-01-01.md": minimal_issue("2030-01-01").encode(),
            f"{ISSUE_DIR}/2030-01-02.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",  # a picture named .md
            f"{ISSUE_DIR}/2030-01-03.md": minimal_issue("2030-01-03").encode("gbk"),
            f"{ISSUE_DIR}/2030-01-04.md": minimal_issue("2030-01-04").encode(),
            f"{ISSUE_DIR}/notes.txt": b"not an issue, not a .md file",
            f"{ISSUE_DIR}/.drafts/2030-01-05.md": minimal_issue("2030-01-05").encode(),
        }
    )
    async with service(database_url, repos) as client:
        status, answer = await deliver(client, payload(before, after))
        assert status == 200
        assert [(done["path"], done["outcome"]) for done in answer["imported"]] == [
            (f"{ISSUE_DIR}/2030-01-01.md", "created"),
            (f"{ISSUE_DIR}/2030-01-04.md", "created"),
        ]
        assert [(failed["path"], failed["reason"].split(":")[0]) for failed in answer["failed"]] == [
            (f"{ISSUE_DIR}/2030-01-02.md", "binary file"),
            (f"{ISSUE_DIR}/2030-01-03.md", "not UTF-8"),
        ]
        stored = [summary.date.isoformat() for summary in await services(client).storage.issues.list()]
        assert stored == ["2030-01-04", "2030-01-01"]
        assert sorted(entry.subject for entry in await audit_entries(client)) == [
            "issue 2030-01-01",
            "issue 2030-01-04",
        ]


async def test_a_new_branch_brings_its_whole_tree(tmp_path: Path, repos: Repos) -> None:
    """`before` all zeros: every issue file of `after` counts, README.md included (it is no issue)."""
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        status, answer = await deliver(client, payload(ZERO_COMMIT, after))
    assert status == 200
    assert answer["imported"] == [
        {"path": f"{ISSUE_DIR}/{DEMO_DATE}.md", "date": DEMO_DATE, "outcome": "created"}
    ]
    assert answer["failed"] == [{"path": "README.md", "reason": parser_reason("README.md", README)}]


async def test_the_issue_folder_setting_limits_what_is_imported(tmp_path: Path, repos: Repos) -> None:
    after = repos.commit(
        {
            f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes(),
            "drafts/2030-01-01.md": minimal_issue("2030-01-01").encode(),
            f"{ISSUE_DIR}-old/2030-01-02.md": minimal_issue("2030-01-02").encode(),
        }
    )
    async with service(sqlite_url(tmp_path / "hook.db"), repos, git_issue_dir=f"/{ISSUE_DIR}/") as client:
        status, answer = await deliver(client, payload(ZERO_COMMIT, after))
    assert (status, answer) == (
        200,
        {
            "imported": [{"path": f"{ISSUE_DIR}/{DEMO_DATE}.md", "date": DEMO_DATE, "outcome": "created"}],
            "failed": [],
        },
    )


async def test_a_renamed_issue_is_looked_at_again(tmp_path: Path, repos: Repos) -> None:
    """Git would call it a rename (not added, not modified); the hook sees the file under its new name."""
    before = repos.head()
    first = repos.commit({f"{ISSUE_DIR}/draft.md": minimal_issue("2030-01-01").encode()})
    git(repos.editor, "mv", f"{ISSUE_DIR}/draft.md", f"{ISSUE_DIR}/2030-01-01.md")
    second = repos.commit({}, "改名")
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        assert (await deliver(client, payload(before, first)))[0] == 200
        status, answer = await deliver(client, payload(first, second))
    assert (status, answer["imported"]) == (
        200,
        [{"path": f"{ISSUE_DIR}/2030-01-01.md", "date": "2030-01-01", "outcome": "unchanged"}],
    )


async def test_a_before_the_clone_never_saw_brings_the_whole_tree(tmp_path: Path, repos: Repos) -> None:
    """After a force push, `before` may be a commit our clone never had: nothing is skipped for it."""
    after = repos.commit({f"{ISSUE_DIR}/2030-01-01.md": minimal_issue("2030-01-01").encode()})
    async with service(sqlite_url(tmp_path / "hook.db"), repos, git_issue_dir=ISSUE_DIR) as client:
        status, answer = await deliver(client, payload("1" * 40, after))
    assert (status, [done["path"] for done in answer["imported"]]) == (200, [f"{ISSUE_DIR}/2030-01-01.md"])


async def test_files_that_are_too_large_or_not_files_are_reported(tmp_path: Path, repos: Repos) -> None:
    before = repos.head()
    (repos.editor / ISSUE_DIR).mkdir()
    (repos.editor / ISSUE_DIR / "latest.md").symlink_to("2030-01-01.md")
    large = minimal_issue("2030-01-02").encode() + b"\n" + b"x" * MAX_ISSUE_BYTES
    after = repos.commit(
        {
            f"{ISSUE_DIR}/2030-01-01.md": minimal_issue("2030-01-01").encode(),
            f"{ISSUE_DIR}/2030-01-02.md": large,
        }
    )
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        status, answer = await deliver(client, payload(before, after))
        assert await services(client).storage.issues.source_text(dt.date(2030, 1, 2)) is None
    assert status == 200
    assert [done["path"] for done in answer["imported"]] == [f"{ISSUE_DIR}/2030-01-01.md"]
    assert answer["failed"] == [
        {"path": f"{ISSUE_DIR}/2030-01-02.md", "reason": f"file too large (limit {MAX_ISSUE_BYTES:,} bytes)"},
        {"path": f"{ISSUE_DIR}/latest.md", "reason": "not a regular file (git mode 120000)"},
    ]


async def test_pushes_at_once_are_taken_in_turn(tmp_path: Path, repos: Repos) -> None:
    before = repos.head()
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        answers = await asyncio.gather(*(deliver(client, payload(before, after)) for _ in range(4)))
        assert [status for status, _ in answers] == [200] * 4
        outcomes = sorted(answer["imported"][0]["outcome"] for _, answer in answers)
        assert outcomes == ["created", "unchanged", "unchanged", "unchanged"]
        assert len(await audit_entries(client)) == 1


async def test_files_past_the_time_budget_are_reported_not_imported(
    tmp_path: Path, repos: Repos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A budget already spent (the constant set below zero): no file is begun, each is named as not imported."""
    monkeypatch.setattr(git_hook, "IMPORT_BUDGET_SECONDS", -1.0)
    before = repos.head()
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        status, answer = await deliver(client, payload(before, after))
        assert await services(client).storage.issues.count() == 0
        assert await audit_entries(client) == []
    assert (status, answer["imported"]) == (200, [])
    assert answer["failed"] == [
        {
            "path": f"{ISSUE_DIR}/{DEMO_DATE}.md",
            "reason": "not imported: the push took over -1 s (redeliver it)",
        }
    ]


# --- what is refused, and what is acknowledged and ignored -----------------------------------------


@pytest.fixture
async def pushed(tmp_path: Path, repos: Repos) -> AsyncIterator[tuple[Client, Repos, str, str]]:
    """The service, and a push (before, after) upstream that the service has not heard of yet."""
    before = repos.head()
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        yield client, repos, before, after


async def assert_no_work_done(client: Client, repos: Repos, clone_before: tuple[bool, str]) -> None:
    assert repos.clone_state() == clone_before
    assert clone_before[0] is False
    assert await services(client).storage.issues.count() == 0
    assert await audit_entries(client) == []


@pytest.mark.parametrize(
    "header",
    [
        "",  # no header at all
        "sha256=",
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        "wrong-secret",
        "uppercase",
        "truncated",
        "other-body",
        "bare-hex",
    ],
)
async def test_a_delivery_without_the_right_signature_is_401_and_fetches_nothing(
    pushed: tuple[Client, Repos, str, str], header: str
) -> None:
    client, repos, before, after = pushed
    body = payload(before, after)
    right = signature(body)
    given = {
        "wrong-secret": signature(body, SECRET + "x"),
        "uppercase": "sha256=" + right.removeprefix("sha256=").upper(),
        "truncated": right[:-1],
        "other-body": signature(body + b" "),
        "bare-hex": right.removeprefix("sha256="),
    }.get(header, header)
    clone_before = repos.clone_state()
    status, answer = await deliver(client, body, signed=given)
    assert status == 401
    assert answer.count("\n") == 1
    assert "X-Hub-Signature-256" in answer
    await assert_no_work_done(client, repos, clone_before)


async def test_a_huge_body_is_refused_before_its_signature_is_computed(
    pushed: tuple[Client, Repos, str, str],
) -> None:
    client, repos, before, after = pushed
    body = payload(before, after, padding="x" * (1024 * 1024))
    clone_before = repos.clone_state()
    assert (await deliver(client, body))[0] == 413
    assert (await deliver(client, body, signed="sha256=" + "0" * 64))[0] == 413
    assert (await deliver(client, body, signed=""))[0] == 401  # no signature: not even read
    await assert_no_work_done(client, repos, clone_before)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D", "not JSON"),  # the form content type
        (b"\xff\xfe{}", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'["refs/heads/main"]', "not a push event"),
        (b"{}", "no ref"),
        (b'{"ref": 7}', "no ref"),
    ],
)
async def test_a_signed_body_that_is_not_a_push_event_is_400(
    pushed: tuple[Client, Repos, str, str], body: bytes, reason: str
) -> None:
    client, repos, _before, _after = pushed
    clone_before = repos.clone_state()
    status, answer = await deliver(client, body)
    assert status == 400
    assert reason in answer
    assert answer.count("\n") == 1
    await assert_no_work_done(client, repos, clone_before)


@pytest.mark.parametrize(
    "after",
    [
        None,
        7,
        "",
        "HEAD",
        "main",
        "--upload-pack=touch pwned",
        "a" * 39,
        "a" * 41,
        "A" * 40,
        "g" * 40,
        "a" * 64,
        "a" * 39 + "\n",
    ],
)
async def test_a_commit_id_that_is_not_40_hex_is_400(
    pushed: tuple[Client, Repos, str, str], after: object
) -> None:
    client, repos, before, _after = pushed
    clone_before = repos.clone_state()
    document = json.loads(payload(before, "0" * 40))
    for key, value in (("after", after), ("before", before)):
        document[key] = value
    status, answer = await deliver(client, json.dumps(document).encode())
    assert (status, answer) == (400, "the push event's after is not a commit id (40 lowercase hex digits)\n")
    document |= {"before": after, "after": _after}
    status, answer = await deliver(client, json.dumps(document).encode())
    assert (status, answer) == (400, "the push event's before is not a commit id (40 lowercase hex digits)\n")
    await assert_no_work_done(client, repos, clone_before)
    assert not (repos.clone / "pwned").exists()


@pytest.mark.parametrize("event_header", ["X-GitHub-Event", "X-Gitea-Event"])
async def test_ping_is_answered_pong(pushed: tuple[Client, Repos, str, str], event_header: str) -> None:
    client, repos, _before, _after = pushed
    clone_before = repos.clone_state()
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    assert await deliver(client, body, event="ping", event_header=event_header) == (200, "pong\n")
    await assert_no_work_done(client, repos, clone_before)


async def test_what_is_not_a_push_to_the_branch_is_acknowledged_and_ignored(
    pushed: tuple[Client, Repos, str, str],
) -> None:
    client, repos, before, after = pushed
    clone_before = repos.clone_state()
    assert await deliver(client, payload(before, after), event="issues") == (
        202,
        "ignored: not a push event\n",
    )
    for ref in ("refs/heads/draft", "refs/tags/v1", "refs/heads/main/x", "main"):
        assert await deliver(client, payload(before, after, ref=ref)) == (
            202,
            "ignored: not a push to refs/heads/main\n",
        )
    deleted = payload(before, ZERO_COMMIT)
    assert await deliver(client, deleted) == (202, "ignored: refs/heads/main was deleted\n")
    status, answer = await deliver(client, payload(before, after), event=None)
    assert status == 400
    assert "X-GitHub-Event" in answer
    await assert_no_work_done(client, repos, clone_before)


async def test_another_branch_can_be_the_one_imported(tmp_path: Path, repos: Repos) -> None:
    before = repos.head()
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    async with service(sqlite_url(tmp_path / "hook.db"), repos, git_branch="published") as client:
        main = await deliver(client, payload(before, after))
        assert main == (202, "ignored: not a push to refs/heads/published\n")
        status, _answer = await deliver(client, payload(before, after, ref="refs/heads/published"))
        assert status == 200


async def test_a_commit_the_clone_cannot_fetch_is_409(pushed: tuple[Client, Repos, str, str]) -> None:
    client, _repos, before, _after = pushed
    status, answer = await deliver(client, payload(before, "1" * 40))
    assert status == 409
    assert answer.startswith(f"commit {'1' * 40} is not in JIANBAO_GIT_REPO after git fetch")
    assert await services(client).storage.issues.count() == 0


async def test_a_fetch_that_fails_is_503_with_one_line(tmp_path: Path, repos: Repos) -> None:
    before = repos.head()
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    git(repos.clone, "remote", "set-url", "origin", "https://user:token123@127.0.0.1:9/nowhere.git")
    async with service(sqlite_url(tmp_path / "hook.db"), repos) as client:
        status, answer = await deliver(client, payload(before, after))
        assert await services(client).storage.issues.count() == 0
    assert status == 503
    assert answer.startswith("git fetch failed in JIANBAO_GIT_REPO: ")
    assert answer.count("\n") == 1
    assert "token123" not in answer


async def test_without_a_repository_the_hook_does_not_exist(tmp_path: Path, repos: Repos) -> None:
    before = repos.head()
    after = repos.commit({f"{ISSUE_DIR}/{DEMO_DATE}.md": demo_bytes()})
    async with service(sqlite_url(tmp_path / "hook.db"), None, git_webhook_secret=SECRET) as client:
        status, _answer = await deliver(client, payload(before, after))
        assert status == 404
        assert await services(client).storage.issues.count() == 0


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", " " * 40, "x" * (WEBHOOK_SECRET_MIN_CHARS - 1)])
def test_a_short_secret_stops_the_service_at_start(tmp_path: Path, secret: str) -> None:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "hook.db"), git_repo=str(tmp_path), git_webhook_secret=secret
    )
    with pytest.raises(ValueError, match=r"JIANBAO_GIT_WEBHOOK_SECRET has .* at least 16"):
        create_app(settings)


def test_a_repository_that_is_not_a_folder_stops_the_service_at_start(tmp_path: Path) -> None:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "hook.db"),
        git_repo=str(tmp_path / "missing"),
        git_webhook_secret=SECRET,
    )
    with pytest.raises(ValueError, match=r"JIANBAO_GIT_REPO .* is not a folder"):
        create_app(settings)


def test_the_hook_settings_start_with_a_long_secret(tmp_path: Path) -> None:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "hook.db"),
        git_repo=str(tmp_path),
        git_webhook_secret="x" * WEBHOOK_SECRET_MIN_CHARS,
    )
    assert any(
        route.resource and route.resource.canonical == HOOK_PATH
        for route in create_app(settings).router.routes()
    )
