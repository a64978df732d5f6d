"""Driving /wechat the way WeChat does: signed query strings, the XML it pushes, safe mode's AES envelope
(written here from the spec in docs/channels.md, "Safe mode", independently of wechatpy), and a running app
whose API calls go to the fake WeChat API server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from xml.etree import ElementTree

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot import wechat
from bot.app import create_app
from bot.services import SERVICES, Services
from bot.settings import Settings
from channels.wechat.render import WECHAT_TEXT_MAX_BYTES
from storage.subscribers import SubscriberStatus
from tests.bot.helpers import run_cli, sqlite_url
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi

TOKEN = "jianbao-wechat-token-for-tests"
AES_KEY = "amlhbmJhby10ZXN0LWFlcy1rZXktMzItYnl0ZXMhISE"  # 43 characters: base64 of 32 bytes without "="
ACCOUNT = "gh_0123456789ab"
USER = "oJianbaoTestUser0000000000001"  # openids are 28 characters of [A-Za-z0-9_-]
PUBLIC_URL = "https://jianbao.example"
_msg_ids = count(7_000_000_000_000_000_000)


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # WeChat's algorithm


def signed_query(
    *, token: str = TOKEN, timestamp: int | None = None, nonce: str | None = None, **extra: str
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or str(secrets.randbelow(10**12))  # a repeat within a second would be refused as a replay
    return {"signature": sign(token, stamp, nonce), "timestamp": stamp, "nonce": nonce, **extra}


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_message(
    content: str, *, openid: str = USER, msg_id: int | None = None, created: int | None = None
) -> str:
    return (
        f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName><FromUserName>{_cdata(openid)}</FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(content)}</Content><MsgId>{msg_id or next(_msg_ids)}</MsgId></xml>"
    )


def event_message(event: str, *, openid: str = USER, created: int | None = None) -> str:
    return (
        f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName><FromUserName>{_cdata(openid)}</FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event>{_cdata(event)}</Event><EventKey><![CDATA[]]></EventKey></xml>"
    )


def assert_fits(text: str) -> None:
    assert 0 < len(text.encode()) <= WECHAT_TEXT_MAX_BYTES


def reply_fields(body: str) -> dict[str, str]:
    root = ElementTree.fromstring(body)  # our own reply, not untrusted input
    return {child.tag: child.text or "" for child in root}


# --- safe mode, from the spec: AES-256-CBC, key = b64decode(EncodingAESKey + "="), IV = key[:16], PKCS#7
# padding to 32 bytes, plaintext = 16 random bytes + 4-byte big-endian length + message + AppID ---------


def _cipher(aes_key: str) -> Cipher[modes.CBC]:
    key = base64.b64decode(aes_key + "=")
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(message: str, *, aes_key: str = AES_KEY, appid: str = APPID) -> str:
    body = message.encode()
    plain = os.urandom(16) + struct.pack(">I", len(body)) + body + appid.encode()
    padding = 32 - len(plain) % 32
    plain += bytes([padding]) * padding
    encryptor = _cipher(aes_key).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def decrypt(encrypted: str, *, aes_key: str = AES_KEY) -> tuple[str, str]:
    """(message, appid) inside an Encrypt field."""
    decryptor = _cipher(aes_key).decryptor()
    plain = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    plain = plain[: -plain[-1]]
    (length,) = struct.unpack(">I", plain[16:20])
    return plain[20 : 20 + length].decode(), plain[20 + length :].decode()


def encrypted_push(
    message: str, *, token: str = TOKEN, timestamp: int | None = None, nonce: str | None = None
) -> tuple[str, dict[str, str]]:
    """The body and query string of `message` pushed in safe mode (encrypted afresh at each call)."""
    encrypted = encrypt(message)
    query = signed_query(token=token, timestamp=timestamp, nonce=nonce, encrypt_type="aes")
    query["msg_signature"] = sign(token, query["timestamp"], query["nonce"], encrypted)
    body = f"<xml><ToUserName>{_cdata(ACCOUNT)}</ToUserName><Encrypt>{_cdata(encrypted)}</Encrypt></xml>"
    return body, query


# --- a running app ---------------------------------------------------------------------------------


@dataclass
class WeChatService:
    client: TestClient[web.Request, web.Application]
    fake: FakeWeChatApi

    @property
    def services(self) -> Services:
        assert self.client.app is not None
        return self.client.app[SERVICES]

    async def status(self, openid: str = USER) -> SubscriberStatus | None:
        subscriber = await self.services.subscribers.get("wechat", openid)
        return subscriber.status if subscriber else None

    async def push(self, xml: str | bytes, **query: str) -> ClientResponse:
        return await self.client.post("/wechat", data=xml, params=query or signed_query())

    async def say(self, content: str, *, openid: str = USER, msg_id: int | None = None) -> str:
        """Push a text message and return the reply's Content ("" for "success")."""
        return await self._reply(await self.push(text_message(content, openid=openid, msg_id=msg_id)), openid)

    async def event(self, event: str, *, openid: str = USER) -> str:
        return await self._reply(await self.push(event_message(event, openid=openid)), openid)

    async def _reply(self, response: ClientResponse, openid: str) -> str:
        assert response.status == 200, await response.text()
        body = await response.text()
        if body == "success":
            return ""
        fields = reply_fields(body)
        assert (fields["MsgType"], fields["ToUserName"], fields["FromUserName"]) == ("text", openid, ACCOUNT)
        return fields["Content"]


_demo_template: list[Path] = []  # shared by every module that uses the fixture (each gets its own FixtureDef)


@pytest.fixture(scope="session")
def wechat_demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the demo issues, imported once per run by the CLI; tests use copies of it."""
    if not _demo_template:
        folder = tmp_path_factory.mktemp("wechat_demo_db")
        path = folder / "demo.db"
        result = run_cli("import", "--demo", database_url=sqlite_url(path), cwd=folder)
        assert result.code == 0, result.stderr
        _demo_template.append(path)
    return _demo_template[0]


def copy_database(template: Path, folder: Path) -> str:
    """The URL of a copy of `template` in `folder` (importing takes a second, copying nothing)."""
    return sqlite_url(Path(shutil.copy(template, folder / "wechat.db")))


@asynccontextmanager
async def running_service(
    database_url: str,
    fake: FakeWeChatApi,
    *,
    safe_mode: bool = False,
    reply_deadline: float | None = None,
    public_url: str = PUBLIC_URL,
) -> AsyncIterator[WeChatService]:
    settings = Settings(
        database_url=database_url,
        public_url=public_url,
        wechat_token=TOKEN,
        wechat_aes_key=AES_KEY if safe_mode else "",
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_api_url=fake.url,
    )
    app = create_app(settings)
    if reply_deadline is not None:
        app[wechat.REPLY_DEADLINE] = reply_deadline
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield WeChatService(client, fake)
