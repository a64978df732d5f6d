"""/wechat end to end: the real app on a loopback port, driven over HTTP as WeChat drives it, with its API
calls going to the fake WeChat API server. Follow, search "量化", 更多, 退订, safe mode, redeliveries and the
late answer by customer-service message."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.app import create_app
from bot.settings import Settings
from bot.wechat.dialog import (
    ALREADY_SUBSCRIBED,
    HELP,
    NOT_SUBSCRIBED,
    SORRY,
    SUBSCRIBED,
    UNSUBSCRIBED,
    WELCOME,
)
from bot.wechat.protocol import masked
from channels.wechat.render import render_wechat
from content.parser import parse_issue
from content.source import decode_issue
from storage.database import Database
from storage.subscribers import SubscriberStatus
from storage.tables import SubscriberRow, core_table
from tests.bot.helpers import minimal_issue
from tests.bot.wechat_helpers import (
    AES_KEY,
    PUBLIC_URL,
    TOKEN,
    USER,
    WeChatService,
    assert_fits,
    copy_database,
    decrypt,
    encrypted_push,
    event_message,
    reply_fields,
    running_service,
    sign,
    signed_query,
    text_message,
    wechat_demo_db,
)
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatApi, fake_wechat

__all__ = ["fake_wechat", "wechat_demo_db"]  # fixtures, used by name

# Words that name quantisation in the demo issues' titles (Chinese and English, and its 1-bit extreme).
QUANTIZATION_WORDS = ("量化", "quant", "int8", "低比特", "二值", "binary")
_LINK = re.compile(r'<a href="([^"]*)">([^<]*)</a>')


@pytest.fixture
async def service(
    tmp_path: Path, wechat_demo_db: Path, fake_wechat: FakeWeChatApi
) -> AsyncIterator[WeChatService]:
    async with running_service(copy_database(wechat_demo_db, tmp_path), fake_wechat) as service:
        yield service


# --- verification ----------------------------------------------------------------------------------


async def test_verification_echoes_echostr(service: WeChatService) -> None:
    response = await service.client.get("/wechat", params=signed_query(echostr="8462394761"))
    assert (response.status, await response.text()) == (200, "8462394761")


async def test_wechat_is_off_without_a_token(tmp_path: Path, wechat_demo_db: Path) -> None:
    app = create_app(Settings(database_url=copy_database(wechat_demo_db, tmp_path)))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/wechat", params=signed_query(echostr="1"))).status == 404
        assert (await client.post("/wechat", params=signed_query(), data=text_message("量化"))).status == 404


# --- the dialog ------------------------------------------------------------------------------------


async def test_follow_search_more_and_unsubscribe(service: WeChatService) -> None:
    assert await service.event("subscribe") == WELCOME
    assert await service.status() is SubscriberStatus.ACTIVE

    reply = await service.say("量化")
    assert_fits(reply)
    links = _LINK.findall(reply)
    items = [(url, title) for url, title in links if title != "往期简报"]
    assert len(items) == 5
    for url, title in items:
        assert url.startswith("https://"), url
        assert any(word in title.lower() for word in QUANTIZATION_WORDS), title
    assert "量化" in items[0][1]
    assert re.search(r"（\d{4}-\d{2}-\d{2}）", reply)
    total = int(re.search(r"共找到 (\d+) 条", reply).group(1))  # type: ignore[union-attr]
    assert f"还有 {total - 5} 条，发送『更多』或访问 " in reply
    assert f'<a href="{PUBLIC_URL}/issues">往期简报</a>' in reply

    more = await service.say("更多")
    assert_fits(more)
    assert more.count("\n6. ") == 1
    assert f"还有 {total - 10} 条" in more

    assert await service.say("退订") == UNSUBSCRIBED
    assert await service.status() is SubscriberStatus.UNSUBSCRIBED
    assert await service.say("退订") == NOT_SUBSCRIBED
    assert await service.say("订阅") == SUBSCRIBED
    assert await service.say("订阅") == ALREADY_SUBSCRIBED
    assert await service.event("unsubscribe") == ""  # "success": an unfollowed user sees no reply
    assert await service.status() is SubscriberStatus.UNSUBSCRIBED

    metrics = await (await service.client.get("/metrics")).text()
    assert 'jianbao_searches_total{channel="wechat"} 2.0' in metrics


async def test_latest_help_and_what_is_not_text(service: WeChatService) -> None:
    latest = await service.services.storage.issues.latest()
    assert latest is not None
    reply = await service.say("最新")
    assert reply == render_wechat(service.services.renderer.document(latest, "wechat")).text
    assert_fits(reply)
    assert await service.say(" 帮助 ") == HELP
    assert await service.say("HELP") == HELP
    assert "先发送一个关键词" in await service.say("更多", openid="oSomeoneWhoNeverSearched000001")
    image = text_message("x").replace(
        "<MsgType><![CDATA[text]]></MsgType>", "<MsgType><![CDATA[image]]></MsgType>"
    )
    for body in (image, event_message("CLICK"), event_message("debug_demo")):
        response = await service.push(body)
        assert (response.status, await response.text()) == (200, "success")


# --- redeliveries ----------------------------------------------------------------------------------


async def test_a_redelivered_message_is_answered_the_same_and_processed_once(service: WeChatService) -> None:
    body = text_message("订阅", msg_id=123456789)
    first, second = [await service.push(body) for _ in range(2)]
    assert await first.text() == await second.text()
    assert reply_fields(await first.text())["Content"] == SUBSCRIBED  # the second was not "已经订阅了"
    assert await service.status() is SubscriberStatus.ACTIVE
    concurrent = await asyncio.gather(
        *(service.push(text_message("退订", msg_id=987654321)) for _ in range(3))
    )
    replies = {await response.text() for response in concurrent}
    assert len(replies) == 1
    assert reply_fields(replies.pop())["Content"] == UNSUBSCRIBED


async def test_a_redelivered_follow_event_welcomes_once(service: WeChatService) -> None:
    body = event_message("subscribe", created=1_900_000_000)
    replies = [await (await service.push(body)).text() for _ in range(3)]
    assert len(set(replies)) == 1
    assert reply_fields(replies[0])["Content"] == WELCOME
    subscriber = await service.services.subscribers.get("wechat", USER)
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE


# --- safe mode -------------------------------------------------------------------------------------


async def test_safe_mode_round_trip(tmp_path: Path, wechat_demo_db: Path, fake_wechat: FakeWeChatApi) -> None:
    async with running_service(
        copy_database(wechat_demo_db, tmp_path), fake_wechat, safe_mode=True
    ) as service:
        for message, check in (
            (event_message("subscribe"), lambda content: content == WELCOME),
            (text_message("量化"), lambda content: "共找到" in content and len(content.encode()) <= 2048),
        ):
            body, query = encrypted_push(message)
            response = await service.push(body, **query)
            assert response.status == 200
            sealed = reply_fields(await response.text())
            assert sealed["MsgSignature"] == sign(
                TOKEN, sealed["TimeStamp"], sealed["Nonce"], sealed["Encrypt"]
            )
            assert sealed["Nonce"] == query["nonce"]
            plaintext, appid = decrypt(sealed["Encrypt"])
            assert appid == APPID
            reply = reply_fields(plaintext)
            assert (reply["ToUserName"], reply["MsgType"]) == (USER, "text")
            assert check(reply["Content"]), reply["Content"]
        assert await service.status() is SubscriberStatus.ACTIVE

        # Compatible mode: WeChat may still push plain XML, signed the usual way.
        assert await service.say("退订") == UNSUBSCRIBED

        body, query = encrypted_push(event_message("subscribe", openid="oAnotherUser00000000000000001"))
        for bad in ({"msg_signature": "0" * 40}, {"timestamp": str(int(query["timestamp"]) - 400)}):
            response = await service.push(body, **{**query, **bad})
            assert response.status == 403
        assert await service.status("oAnotherUser00000000000000001") is None


async def test_an_encrypted_push_without_an_aes_key_is_400(service: WeChatService) -> None:
    body, query = encrypted_push(event_message("subscribe"))
    response = await service.push(body, **query)
    assert response.status == 400
    assert await service.status() is None


# --- the late answer -------------------------------------------------------------------------------


async def _wait_for(condition: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_an_answer_later_than_the_deadline_goes_out_as_a_customer_service_message(
    tmp_path: Path, wechat_demo_db: Path, fake_wechat: FakeWeChatApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    database = copy_database(wechat_demo_db, tmp_path)
    # A keyword search is answered at once whatever the deadline; 最新 reads the database first.
    async with running_service(database, fake_wechat, reply_deadline=0.0) as service:
        body = text_message("最新", msg_id=555)
        response = await service.push(body)
        assert (response.status, await response.text()) == (200, "success")
        await _wait_for(lambda: fake_wechat.texts_to(USER))
        [late] = fake_wechat.texts_to(USER)
        assert "嵌入式AI简报" in late
        assert_fits(late)
        assert await (await service.push(body)).text() == "success"  # WeChat's retry: not answered again

        fake_wechat.outside_window.add(USER)  # 48 h after the user's last message
        assert await (await service.push(text_message("最新"))).text() == "success"
        await _wait_for(lambda: any("not delivered" in record.getMessage() for record in caplog.records))
    assert len(fake_wechat.texts_to(USER)) == 1

    logged = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("bot"))
    assert masked(USER) in logged
    for secret in (USER, TOKEN, AES_KEY, SECRET, *fake_wechat._valid_tokens):
        assert secret not in logged


async def test_a_bad_aes_key_stops_the_start_naming_the_setting_not_the_key(
    tmp_path: Path, wechat_demo_db: Path
) -> None:
    bad_key = "not-a-valid-encoding-aes-key-of-43-chars!!!"
    settings = Settings(
        database_url=copy_database(wechat_demo_db, tmp_path),
        wechat_token=TOKEN,
        wechat_aes_key=bad_key,
        wechat_appid=APPID,
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    with pytest.raises(ValueError, match="JIANBAO_WECHAT_AES_KEY") as raised:
        await server.start_server()
    await server.close()
    assert bad_key not in str(raised.value)


async def test_a_database_gone_away_gets_an_apology_not_an_error(
    service: WeChatService, caplog: pytest.LogCaptureFixture
) -> None:
    await service.services.storage.database.close()  # as if the database went away
    assert await service.say("订阅") == SORRY
    assert "共找到" in await service.say("量化")  # search needs no database
    logged = [record.getMessage() for record in caplog.records if record.name.startswith("bot")]
    assert any("not answered" in line and masked(USER) in line for line in logged)
    assert not any(USER in line for line in logged)


async def test_a_keyword_reply_does_not_wait_for_the_last_seen_write(service: WeChatService) -> None:
    """While another transaction holds the database's writes, a reader's keyword is answered at once; the
    time they wrote is written once the database is free again (the buffer retries)."""
    reader = "oJianbaoTestUser0000000000002"
    await service.event("subscribe", openid=reader)  # a follow: not a message, the window stays shut
    database = service.services.storage.database
    subscriber = core_table(SubscriberRow)

    async def last_seen() -> object:
        async with database.transaction() as connection:
            query = select(subscriber.c.last_seen_at).where(subscriber.c.address == reader)
            return (await connection.execute(query)).scalar_one()

    before = await last_seen()
    async with database.transaction("write") as connection:
        await connection.execute(select(subscriber).with_for_update())
        began = time.monotonic()
        answer = await service.say("量化", openid=reader)
        took = time.monotonic() - began
    assert "共找到" in answer
    assert took < 1.0, f"the reply took {took:.2f} s"
    for _ in range(100):
        after = await last_seen()
        if after != before:
            break
        await asyncio.sleep(0.1)
    assert after is not None
    assert after != before


async def test_last_seen_times_still_waiting_at_shutdown_are_written(
    tmp_path: Path, wechat_demo_db: Path, fake_wechat: FakeWeChatApi
) -> None:
    """Readers' times noted just before the app stops (well within the buffer's second) are in the
    database after it stopped, and stopping does not wait on a write left halfway."""
    url = copy_database(wechat_demo_db, tmp_path)
    readers = [f"oJianbaoShutdownReader{n:06d}" for n in range(40)]
    async with running_service(url, fake_wechat) as service:
        for reader in readers:
            await service.event("subscribe", openid=reader)
        await asyncio.gather(*(service.say("量化", openid=reader) for reader in readers))
        began = time.monotonic()
    took = time.monotonic() - began
    assert took < 5, f"stopping took {took:.1f} s"
    async with Database(url) as database:
        subscriber = core_table(SubscriberRow)
        query = select(subscriber.c.address).where(subscriber.c.last_seen_at.is_not(None))
        async with database.transaction() as connection:
            seen = set((await connection.execute(query)).scalars())
    assert seen >= set(readers)


async def test_a_new_issue_shows_in_the_next_keyword_reply(service: WeChatService) -> None:
    """Replies are kept per index generation: an issue indexed after a reply was given is in the next one."""
    word = "蜂鸟量化芯片"
    before = await service.say(word)
    issue = parse_issue(decode_issue(minimal_issue("2031-05-04", first_title=f"{word}发布").encode()))
    service.services.search.replace_issues([issue])
    after = await service.say(word)
    assert f"{word}发布" not in before
    assert f"{word}发布" in after


async def test_a_keyword_is_answered_at_once_whatever_the_deadline(
    tmp_path: Path, wechat_demo_db: Path, fake_wechat: FakeWeChatApi
) -> None:
    """A search needs no I/O: it is answered in the request, even with no time at all to wait for a task."""
    async with running_service(
        copy_database(wechat_demo_db, tmp_path), fake_wechat, reply_deadline=0.0
    ) as service:
        assert "共找到" in await service.say("量化")
        assert await service.say("帮助") == HELP
    assert fake_wechat.texts_to(USER) == []  # nothing went out late
