"""The double-submit CSRF guard on its own: which pairs and which Origin headers it takes. The whole
sign-up form over HTTP is in test_signup_abuse.py."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from bot.csrf import FIELD, CsrfRefused, FormGuard

KEY = "a long random secret key for the tests"


def request(
    headers: dict[str, str] | None = None, *, cookie: str | None = None, guard: FormGuard | None = None
) -> web.Request:
    """A POST /subscribe as it reaches the handler: from a client that asked for Host jb.example."""
    headers = dict(headers or {})
    if cookie is not None:
        headers["Cookie"] = f"{(guard or FormGuard(KEY, '')).cookie_name}={cookie}"
    return make_mocked_request("POST", "/subscribe", headers={"Host": "jb.example", **headers})


def test_a_pair_from_the_page_is_taken_and_reused() -> None:
    guard = FormGuard(KEY, "https://jb.example")
    token = guard.offer(request())

    guard.check(request(cookie=token.cookie_value, guard=guard), {FIELD: token.field})
    again = guard.offer(request(cookie=token.cookie_value, guard=guard))
    assert (again.cookie_value, again.field) == (token.cookie_value, token.field)
    assert guard.offer(request()).cookie_value != token.cookie_value  # a new visitor, a new value


@pytest.mark.parametrize(
    "case", ["other key", "no cookie", "garbled cookie", "no field", "field as a list", "cookie as field"]
)
def test_a_pair_that_does_not_match_is_refused(case: str) -> None:
    guard = FormGuard(KEY, "")
    token = guard.offer(request())
    cookie: str | None = token.cookie_value
    form: dict[str, object] = {FIELD: token.field}
    if case == "other key":
        form = {FIELD: FormGuard("another key", "").offer(request(cookie=token.cookie_value)).field}
    elif case == "no cookie":
        cookie = None
    elif case == "garbled cookie":
        cookie = token.cookie_value[:-1] + "!"
    elif case == "no field":
        form = {}
    elif case == "field as a list":
        form = {FIELD: [token.field]}
    elif case == "cookie as field":
        form = {FIELD: token.cookie_value}

    with pytest.raises(CsrfRefused) as refused:
        guard.check(request(cookie=cookie), form)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("public_url", "origin", "taken"),
    [
        ("https://jb.example", "https://jb.example", True),
        ("https://jb.example/", "https://JB.example:443", True),
        ("https://jb.example", "http://jb.example", False),
        ("https://jb.example", "https://jb.example:8443", False),
        ("https://jb.example", "https://jb.example.evil.com", False),
        ("https://jb.example", "null", False),
        ("https://jb.example", "", False),
        # No PUBLIC_URL: the host the client asked for (Host: jb.example), whatever the scheme a proxy
        # in front terminates.
        ("", "https://jb.example", True),
        ("", "http://jb.example", True),
        ("", "http://jb.example:8080", False),
        ("", "https://evil.example", False),
        ("", "null", False),
    ],
)
def test_the_origin_header_must_name_our_origin(public_url: str, origin: str, taken: bool) -> None:
    guard = FormGuard(KEY, public_url)
    post = request({"Origin": origin})

    if taken:
        guard.check_origin(post)
    else:
        with pytest.raises(CsrfRefused):
            guard.check_origin(post)


def test_without_an_origin_header_the_pair_decides() -> None:
    FormGuard(KEY, "https://jb.example").check_origin(request())


def test_a_guard_needs_a_key() -> None:
    with pytest.raises(ValueError, match="secret key"):
        FormGuard("", "https://jb.example")
