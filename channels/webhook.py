"""Posting one JSON body to a group robot's webhook over aiohttp, as WeCom and Feishu robots both take it,
and reading what the HTTP exchange itself says (each channel reads its platform's own answer codes).

What a broadcast must know of an exchange, whichever the platform:
- a connect timeout or a refused connection: nothing was sent -> RETRY;
- no answer in time once the request went out: it may have been delivered -> UNCERTAIN, never resent;
- a dropped connection: a front end that closes without answering has not handed the message on -> RETRY
  (re-sending one message of an issue twice is a lesser harm than losing it);
- an answer without the platform's code: 2xx -> UNCERTAIN (the robot may have taken it), 429 -> RETRY
  after the platform's Retry-After, 5xx -> RETRY, a 404 or a redirect -> ChannelDown (the configured API
  root is wrong: no robot can be reached), any other -> FAILED.

Redirects are never followed, so no stored address can make a sender call anywhere else. Errors are one
line and never hold the URL: aiohttp's own messages do, and a robot's URL holds its secret key or token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from channels.base import ChannelDown, PushResult, PushStatus

MAX_RETRY_AFTER_SECONDS = 3600.0  # a Retry-After beyond an hour is not waited for in one broadcast
MAX_ANSWER_BYTES = 64 * 1024  # a robot's answer is a few hundred bytes of JSON; read no more than this
MAX_MESSAGE_CHARS = 200  # of the platform's own message, in an error


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None  # the Retry-After header, as sent
    body: bytes  # at most MAX_ANSWER_BYTES of it


def api_root(api_url: str, platform: str) -> str:
    """The configured root, checked: http(s), a host, no credentials, query or fragment."""
    parts = urlsplit(api_url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"the {platform} API root must be an http(s) URL without credentials, query or fragment"
        )
    return api_url.rstrip("/")


class JsonPoster:
    """One connection pool (its own, made on first use, or a session given to it, which it then leaves
    open); `close()` releases its own."""

    def __init__(
        self,
        *,
        timeout: float,
        connect_timeout: float,
        connections: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None,  # a total would also cover connecting, when nothing was sent yet
            sock_connect=connect_timeout,
            sock_read=timeout,
        )
        self._connections = connections
        self._session = session
        self._owns_session = session is None

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def post(self, url: str, raw: bytes, params: dict[str, str] | None = None) -> Answer | PushResult:
        """The answer, or what a failed exchange came to (see the module doc)."""
        try:
            async with self._client().post(
                url,
                params=params,
                data=raw,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                body = await response.content.read(MAX_ANSWER_BYTES)
        except aiohttp.ConnectionTimeoutError:  # never connected: nothing was sent
            return PushResult(PushStatus.RETRY, error="connect timeout: not sent")
        except TimeoutError:
            return PushResult(PushStatus.UNCERTAIN, error="no answer in time: maybe delivered")
        except aiohttp.ClientConnectorError as error:
            return PushResult(PushStatus.RETRY, error=f"cannot connect ({type(error).__name__})")
        except aiohttp.ClientError as error:
            # Never the error's text: aiohttp puts the URL, secret included, into it.
            return PushResult(PushStatus.RETRY, error=f"connection dropped ({type(error).__name__})")
        return Answer(status, retry_after, body)

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop, as aiohttp requires.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections), trust_env=False
            )
        return self._session


def by_status(answer: Answer, *, default_retry: float, channel: str, platform: str, code: str) -> PushResult:
    """What an answer without the platform's `code` (e.g. "errcode") means, by its HTTP status alone."""
    status = answer.status
    if 200 <= status < 300:
        return PushResult(PushStatus.UNCERTAIN, error=f"HTTP {status} without {code}: maybe delivered")
    if status == 429:
        retry = retry_after(answer.retry_after, default_retry)
        return PushResult(PushStatus.RETRY, error="HTTP 429", retry_after=retry)
    if status >= 500:
        return PushResult(PushStatus.RETRY, error=f"HTTP {status}")
    if status == 404 or 300 <= status < 400:
        raise ChannelDown(f"{channel}: the API root answered HTTP {status}: it is not a {platform} API root")
    return PushResult(PushStatus.FAILED, error=f"HTTP {status}")


def retry_after(header: str | None, default: float) -> float:
    """The platform's Retry-After in seconds when it sends one (within 1 s and an hour), else `default`."""
    if header is not None and header.strip().isdigit():
        return min(max(float(header.strip()), 1.0), MAX_RETRY_AFTER_SECONDS)
    return default


def json_object(raw: bytes) -> dict[str, Any]:
    """The answer as a JSON object; empty for anything else (not JSON, not an object)."""
    try:
        answer = json.loads(raw)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def one_line(text: str) -> str:
    """The platform's message as one short line (it goes into an error)."""
    return " ".join(text.split())[:MAX_MESSAGE_CHARS]


def api_url_problem(url: str, variable: str, platform: str) -> str:
    """Why a configured API root cannot be used, in one line naming its setting ("" when it can): the
    sender's own check (`api_root`), so a root the settings accept is one the sender takes."""
    if not url:
        return f"{variable} is empty"
    try:
        api_root(url, platform)
    except ValueError:
        return f"{variable} is not an http(s) URL without credentials, query or fragment"
    return ""
