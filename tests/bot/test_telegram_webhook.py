"""/telegram's checks and the bot's life: the secret header before anything else, malformed bodies,
redeliveries, and starting with the app (commands once, webhook registration, Telegram off, no secret,
a rejected token, the Bot API down at start) without the token ever reaching the log."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from pathlib import Path

import pytest

from bot.app import create_app
from bot.settings import Settings
from bot.telegram import RUNTIME, SECRET_HEADER
from bot.telegram.lifecycle import ALLOWED_UPDATES, SECRET_REQUIRED, TOKEN_REJECTED
from bot.telegram.replies import COMMANDS, SUBSCRIBED
from storage.subscribers import SubscriberStatus
from tests.bot.telegram_helpers import (
    SECRET,
    TelegramService,
    copy_database,
    module_service,
    running_service,
    service,
    telegram_settings,
    visible,
)
from tests.fakes.telegram_api import TOKEN, FakeTelegram, fake_telegram, running_fake_telegram
from tests.fakes.telegram_html import parse_html
from tests.fakes.telegram_updates import message_update, next_update_id

__all__ = ["fake_telegram", "module_service", "service"]  # the fixtures, used by name

_chat_ids = itertools.count(600_001)


def _reply_chain(depth: int) -> bytes:
    """A message replying to a message replying to ... `depth` deep: JSON that the decoder reads, and that
    python-telegram-bot then follows recursively (several frames a level) when it builds the Update."""
    head = b'{"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}, "reply_to_message": '
    message = (
        head * depth + b'{"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}' + b"}" * depth
    )
    assert json.loads(message)  # within the decoder's depth: the recursion this tests is the library's
    return b'{"update_id": 1, "message": ' + message + b"}"


# --- the route's checks (one app for all) ---------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper(), "Bearer " + SECRET],
    ids=["missing", "empty", "wrong", "longer", "shorter", "case", "bearer"],
)
async def test_a_missing_or_wrong_secret_is_refused_before_anything_happens(
    service: TelegramService, secret: str | None
) -> None:
    chat_id = next(_chat_ids)
    response = await service.post(message_update(chat_id, "/subscribe"), secret=secret, status=403)
    assert await response.text() == "Forbidden\n"
    assert service.fake.received == []
    assert await service.status_of(chat_id) is None


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"",
        b"\xff\xfe{}",
        b"[]",
        b"42",
        b'"update"',
        b'{"message": {"text": "/subscribe"}}',
        b'{"update_id": "815000001"}',
        b'{"update_id": 1, "message": "hi"}',
        b'{"update_id": 1, "message": {"message_id": 1, "text": "/start"}}',
        b'{"update_id": 1, "callback_query": []}',
        b'{"update_id": 1, "inline_query": {"id": "1", "query": 5}}',
        b"[" * 200_000,
        b'{"update_id": 1, "x": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
        _reply_chain(600),
        b'{"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": {"a": 1}, "type": "private"}, "text": "hi"}}',
        b'{"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "from": {"id": [1], "is_bot": false, "first_name": "x"}, "text": "hi"}}',
        b'{"update_id": 1, "message": {"message_id": 1, "date": 1e22, "chat": {"id": 5, "type": "private"}, "text": "hi"}}',
        b'{"update_id": 1, "message": {"message_id": 1, "date": 9223372036854775807, "chat": {"id": 5, "type": "private"}, "text": "hi"}}',
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "array",
        "number",
        "string",
        "no-update-id",
        "string-update-id",
        "message-not-object",
        "message-without-chat",
        "callback-not-object",
        "inline-without-from",
        "nested-arrays",
        "nested-objects",
        "reply-chain",
        "chat-id-object",
        "user-id-list",
        "date-overflow",
        "date-beyond-time-t",
    ],
)
async def test_a_malformed_body_is_a_one_line_400(service: TelegramService, body: bytes) -> None:
    response = await service.post(body, status=400)
    text = await response.text()
    assert text.count("\n") == 1
    assert "Traceback" not in text
    assert service.fake.received == []


@pytest.mark.asyncio(loop_scope="module")
async def test_a_body_over_1_mb_is_refused(service: TelegramService) -> None:
    huge = json.dumps(message_update(next(_chat_ids), "量" * 400_000), ensure_ascii=False)
    await service.post(huge, status=413)
    await service.post(huge, secret=None, status=403)  # and without the secret it is not even read
    assert service.fake.received == []


@pytest.mark.asyncio(loop_scope="module")
async def test_only_post_is_routed(service: TelegramService) -> None:
    response = await service.client.get("/telegram", headers={SECRET_HEADER: SECRET})
    assert response.status == 405
    response = await service.client.post("/telegram/extra", headers={SECRET_HEADER: SECRET})
    assert response.status == 404


@pytest.mark.asyncio(loop_scope="module")
async def test_a_redelivered_update_is_handled_once(service: TelegramService) -> None:
    chat_id = next(_chat_ids)
    update = message_update(chat_id, "量化")
    await service.post(update)
    await service.post(update)
    assert len(service.fake.sent_to(chat_id)) == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_updates_the_bot_does_not_handle_are_accepted_quietly(service: TelegramService) -> None:
    chat_id = next(_chat_ids)
    await service.post({"update_id": next_update_id()})
    member = {
        "chat": {"id": chat_id, "type": "private", "first_name": "读者"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "读者"},
        "date": 1_700_000_000,
        "old_chat_member": {"status": "member", "user": {"id": 123, "is_bot": True, "first_name": "简报"}},
        "new_chat_member": {
            "status": "kicked",
            "until_date": 0,
            "user": {"id": 123, "is_bot": True, "first_name": "简报"},
        },
    }
    await service.post({"update_id": next_update_id(), "my_chat_member": member})
    assert service.fake.received == []


# --- starting and stopping ------------------------------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path, demo_db: tuple[str, Path]) -> str:
    return copy_database(demo_db, tmp_path)


async def test_commands_are_announced_once_at_start(database_url: str, fake_telegram: FakeTelegram) -> None:
    async with running_service(telegram_settings(database_url, fake_telegram), fake_telegram) as service:
        assert [method for method, _ in fake_telegram.received] == ["getMe", "setMyCommands"]
        (announced,) = fake_telegram.calls("setMyCommands")
        assert [command["command"] for command in announced["commands"]] == [
            "start",
            "subscribe",
            "unsubscribe",
            "topics",
            "latest",
            "search",
            "help",
        ]
        assert [command["description"] for command in announced["commands"]] == [text for _, text in COMMANDS]
        assert fake_telegram.errors == []
        await service.say(next(_chat_ids), "量化")
        await service.say(next(_chat_ids), "/help")
    assert len(fake_telegram.calls("setMyCommands")) == 1
    assert fake_telegram.calls("setWebhook") == []  # no public https address: nothing to register


async def test_the_webhook_is_registered_with_the_secret_when_the_public_url_is_https(
    database_url: str, fake_telegram: FakeTelegram
) -> None:
    settings = telegram_settings(database_url, fake_telegram, public_url="https://jianbao.example.com/")
    async with running_service(settings, fake_telegram):
        (registered,) = fake_telegram.calls("setWebhook")
    assert registered["url"] == "https://jianbao.example.com/telegram"
    assert registered["secret_token"] == SECRET
    assert registered["allowed_updates"] == list(ALLOWED_UPDATES)
    assert fake_telegram.errors == []


async def test_telegram_is_off_without_a_token(database_url: str, fake_telegram: FakeTelegram) -> None:
    settings = Settings(database_url=database_url, telegram_api_url=fake_telegram.url)
    async with running_service(settings, fake_telegram) as service:
        await service.post(message_update(next(_chat_ids), "/start"), status=404)
        await service.post(message_update(next(_chat_ids), "/start"), secret=None, status=404)
        health = await (await service.client.get("/healthz")).json()
    assert health["channels"]["telegram"] == "off: JIANBAO_TELEGRAM_TOKEN is not set"
    assert fake_telegram.received == []


async def test_without_a_secret_every_update_is_refused(
    database_url: str, fake_telegram: FakeTelegram
) -> None:
    settings = telegram_settings(database_url, fake_telegram, telegram_secret="")
    async with running_service(settings, fake_telegram) as service:
        for secret in (None, "", SECRET):
            await service.post(message_update(next(_chat_ids), "/subscribe"), secret=secret, status=403)
        health = await (await service.client.get("/healthz")).json()
    assert health["channels"]["telegram"] == SECRET_REQUIRED
    assert fake_telegram.received == []  # not even getMe: a bot that can take no update is not started


async def test_a_rejected_token_leaves_the_service_up_and_out_of_the_log(
    database_url: str, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_token = "999:WRONGtoken"
    settings = telegram_settings(database_url, fake_telegram, telegram_token=wrong_token)
    async with running_service(settings, fake_telegram) as service:
        await service.post(message_update(next(_chat_ids), "/start"), status=503)
        health = await service.client.get("/healthz")
        assert health.status == 200
        assert (await health.json())["channels"]["telegram"] == TOKEN_REJECTED
    assert fake_telegram.errors == [("getMe", "Unauthorized")]
    assert not [record for record in caplog.records if wrong_token in record.getMessage()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_an_unreachable_bot_api_at_start_is_retried_in_the_background(database_url: str) -> None:
    port = free_port()
    fake = FakeTelegram()
    settings = Settings(
        database_url=database_url,
        telegram_token=TOKEN,
        telegram_secret=SECRET,
        telegram_api_url=f"http://127.0.0.1:{port}",
    )
    async with running_service(settings, fake) as service:
        chat_id = next(_chat_ids)
        await service.post(message_update(chat_id, "/subscribe"), status=503)  # Telegram will redeliver
        health = await (await service.client.get("/healthz")).json()
        assert health["channels"]["telegram"].startswith("starting")
        async with running_fake_telegram(port=port) as fake:
            service.fake = fake
            runtime = service.app[RUNTIME]
            for _ in range(100):  # the first retry comes after 1 s
                if runtime.application is not None:
                    break
                await asyncio.sleep(0.05)
            assert visible(await service.say(chat_id, "/subscribe")) == parse_html(SUBSCRIBED).text
            assert await service.status_of(chat_id) == SubscriberStatus.ACTIVE
            health = await (await service.client.get("/healthz")).json()
            assert health["channels"]["telegram"] == "on"


async def test_the_token_never_reaches_the_log(
    database_url: str, fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_service(telegram_settings(database_url, fake_telegram), fake_telegram) as service:
        await service.say(next(_chat_ids), "量化")
    assert any(record.name == "httpx" for record in caplog.records)  # URLs were logged...
    assert not [
        record.getMessage() for record in caplog.records if TOKEN in record.getMessage()
    ]  # ...redacted
    assert not [record for record in caplog.records if SECRET in record.getMessage()]


def test_create_app_needs_no_network() -> None:
    """Building the app (not starting it) touches nothing: the bot is built by the start step."""
    app = create_app(
        Settings(database_url="sqlite:///unused.db", telegram_token=TOKEN, telegram_secret=SECRET)
    )
    assert app[RUNTIME].application is None
