"""Signing in to the console through the real app: cookies, CSRF, guessing limits, sessions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.console.auth import COOKIE, LOGIN_FAILURES
from bot.console.passwords import hash_password
from bot.services import SERVICES
from bot.settings import Settings
from storage.database import Database
from storage.editors import EditorStore
from tests.bot.helpers import run_cli, sqlite_url
from tests.bot.signup_helpers import csrf_field

NAME = "editor-li"
PASSWORD = "correct horse battery staple"


@dataclass
class Console:
    client: TestClient[web.Request, web.Application]

    async def form_field(self) -> str:
        page = await self.client.get("/console/sign-in")
        assert page.status == 200
        return csrf_field(await page.text())

    async def sign_in(
        self, name: str = NAME, password: str = PASSWORD, field: str | None = None
    ) -> ClientResponse:
        token = await self.form_field() if field is None else field
        return await self.client.post(
            "/console/sign-in",
            data={"name": name, "password": password, "csrf_token": token},
            allow_redirects=False,
        )

    def session_cookie(self) -> str | None:
        cookies = {cookie.key: cookie.value for cookie in self.client.session.cookie_jar}
        return cookies.get(COOKIE)


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    settings = Settings(
        database_url=sqlite_url(tmp_path / "console.db"),
        public_url="http://127.0.0.1",
        secret_key="console-test-secret-key",
    )
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        assert client.app is not None
        editors = EditorStore(client.app[SERVICES].storage.database)
        await editors.add(NAME, hash_password(PASSWORD))
        yield Console(client)


async def test_an_editor_signs_in_sees_the_console_and_signs_out(console: Console) -> None:
    signed_in = await console.sign_in()
    assert signed_in.status == 303
    assert signed_in.headers["Location"] == "/console"
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # PUBLIC_URL is http here
    home = await console.client.get("/console")
    assert home.status == 200
    html = await home.text()
    assert NAME in html
    assert "最近的简报" in html
    assert home.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in home.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in home.headers["Content-Security-Policy"]

    signed_out = await console.client.post(
        "/console/sign-out", data={"csrf_token": csrf_field(html)}, allow_redirects=False
    )
    assert signed_out.status == 303
    again = await console.client.get("/console", allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, "/console/sign-in")


async def test_a_missing_or_stolen_old_session_gets_nothing(console: Console) -> None:
    anonymous = await console.client.get("/console", allow_redirects=False)
    assert (anonymous.status, anonymous.headers["Location"]) == (303, "/console/sign-in")
    posted = await console.client.post("/console/sign-out", data={}, allow_redirects=False)
    assert posted.status == 401
    # A token planted before sign-in (session fixation) is not the one the sign-in hands out.
    console.client.session.cookie_jar.update_cookies({COOKIE: "planted-by-someone-else"})
    await console.sign_in()
    assert console.session_cookie() not in (None, "planted-by-someone-else")


async def test_a_wrong_csrf_token_is_refused_and_signs_nobody_in(console: Console) -> None:
    await console.form_field()  # the cookie half of the pair
    refused = await console.sign_in(field="x" * 43)
    assert refused.status == 403
    assert console.session_cookie() is None
    assert (await console.client.get("/console", allow_redirects=False)).status == 303


async def test_a_sixth_wrong_password_is_refused_with_retry_after_even_if_right(console: Console) -> None:
    for _ in range(LOGIN_FAILURES):
        wrong = await console.sign_in(password="not the password at all")
        assert wrong.status == 401
        assert "名字或密码不对" in await wrong.text()
    sixth = await console.sign_in()  # the right password, too late
    assert sixth.status == 429
    assert int(sixth.headers["Retry-After"]) > 0
    assert console.session_cookie() is None


async def test_an_unknown_name_gets_the_same_answer_as_a_wrong_password(console: Console) -> None:
    unknown = await console.sign_in(name="nobody-here")
    wrong = await console.sign_in(password="not the password at all")
    assert unknown.status == wrong.status == 401
    assert re.sub(r'value="[^"]*"', "", await unknown.text()).replace("nobody-here", NAME) == re.sub(
        r'value="[^"]*"', "", await wrong.text()
    )


async def test_editors_add_asks_twice_and_keeps_only_a_hash(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "editors.db")
    added = run_cli(
        "editors", "add", "wang", database_url=url, cwd=tmp_path, stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert added.code == 0, added.stderr
    assert added.stdout.strip().endswith("editor added: wang")
    short = run_cli("editors", "add", "zhao", database_url=url, cwd=tmp_path, stdin="short\nshort\n")
    assert short.code == 2
    assert "password is 12-1024 characters" in short.stderr
    listed = run_cli("editors", "list", database_url=url, cwd=tmp_path)
    assert listed.stdout.split() == ["wang"]
    async with Database(url) as database:
        editor = await EditorStore(database).get("wang")
    assert editor is not None
    assert PASSWORD not in editor.password_hash
    assert editor.password_hash.startswith("$argon2id$")
