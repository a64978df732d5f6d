"""The WeChat protocol without a server: the official signature and safe-mode vectors (with the clock
set to their time), freshness, the memory of signed pushes against replays, hostile XML and fields, the
AES envelope, replies, the caches and the search reply."""

from __future__ import annotations

import datetime as dt
import json
import time
from xml.etree import ElementTree

import pytest

from bot.wechat.dialog import search_reply
from bot.wechat.protocol import (
    MAX_CLOCK_SKEW_SECONDS,
    MAX_CONTENT_CHARS,
    MAX_XML_BYTES,
    MAX_XML_ELEMENTS,
    REMEMBER_MARGIN_SECONDS,
    Envelope,
    Forbidden,
    Message,
    PushMemory,
    check_signature,
    masked,
    parse_fields,
    signature,
    text_reply,
)
from content.errors import BadInput, TooLarge, Unavailable
from storage.search.results import MAX_OFFSET, SearchHit, SearchResult
from tests.bot.wechat_helpers import AES_KEY, TOKEN, decrypt, encrypt, sign
from tests.fakes.wechat_api import APPID

# Official vectors (消息加解密说明, 2024; docs/channels.md, "Safe mode"):
# https://developers.weixin.qq.com/doc/subscription/guide/dev/push/encryption.html
GET_VECTOR = {"token": "AAAAA", "timestamp": "1714037059", "nonce": "486452656"}
GET_SIGNATURE = "899cf89e464efb63f54ddac96b0a0a235f53aa78"
SAFE_TOKEN, SAFE_KEY, SAFE_APPID = "AAAAA", "A" * 43, "wxba5fad812f8e6fb9"
SAFE_TIMESTAMP, SAFE_NONCE = "1714112445", "415670741"
SAFE_SIGNATURE = "6c5c811b55cc85e0e1b54100749188c20beb3f5d"
SAFE_MSG_SIGNATURE = "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
SAFE_ENCRYPT = (
    "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6Js"
    "XUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8Ea"
    "jAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04="
)


# --- signatures and freshness ----------------------------------------------------------------------


def test_the_official_get_vector() -> None:
    token, timestamp, nonce = GET_VECTOR.values()
    assert signature(token, timestamp, nonce) == GET_SIGNATURE
    check_signature(token, GET_SIGNATURE, timestamp, nonce, now=int(timestamp) + 30)


def test_the_official_get_vector_is_a_replay_today() -> None:
    token, timestamp, nonce = GET_VECTOR.values()
    with pytest.raises(Forbidden, match="stale"):
        check_signature(token, GET_SIGNATURE, timestamp, nonce, now=time.time())


@pytest.mark.parametrize(
    ("signed", "timestamp", "nonce"),
    [
        (GET_SIGNATURE.replace("8", "9", 1), "1714037059", "486452656"),  # one digit off
        (GET_SIGNATURE, "1714037060", "486452656"),  # another timestamp
        (GET_SIGNATURE, "1714037059", "486452657"),  # another nonce
        (GET_SIGNATURE.upper(), "1714037059", "486452656"),
        ("", "1714037059", "486452656"),
        (None, "1714037059", "486452656"),
        (GET_SIGNATURE, None, "486452656"),
        (GET_SIGNATURE, "1714037059", None),
    ],
)
def test_a_wrong_or_missing_signature_is_forbidden(
    signed: str | None, timestamp: str | None, nonce: str | None
) -> None:
    with pytest.raises(Forbidden):
        check_signature("AAAAA", signed, timestamp, nonce, now=1714037059)


@pytest.mark.parametrize(
    ("skew", "fresh"), [(0, True), (299, True), (-299, True), (301, False), (-301, False)]
)
def test_timestamps_more_than_5_minutes_away_are_refused(skew: int, fresh: bool) -> None:
    stamp = "1714037059"
    signed = sign(TOKEN, stamp, "1")
    if fresh:
        check_signature(TOKEN, signed, stamp, "1", now=int(stamp) + skew)
    else:
        with pytest.raises(Forbidden, match="stale"):
            check_signature(TOKEN, signed, stamp, "1", now=int(stamp) + skew)


@pytest.mark.parametrize("stamp", ["-5", "1e9", "１７１４０３７０５９", " 1714037059", "9" * 40])
def test_a_timestamp_that_is_not_plain_digits_is_refused(stamp: str) -> None:
    with pytest.raises(Forbidden):
        check_signature(TOKEN, sign(TOKEN, stamp, "1"), stamp, "1", now=1714037059)


# --- replays: the signed (timestamp, nonce) pairs remembered with their body ----------------------

NOW = 1714037059


def test_the_same_signed_pair_with_another_body_is_a_forgery_and_is_not_remembered() -> None:
    memory = PushMemory()
    stamp = str(NOW)
    assert memory.admit(stamp, "42", b"<xml>follow by A</xml>", now=NOW) is True
    with pytest.raises(Forbidden, match="replay"):
        memory.admit(stamp, "42", b"<xml>follow by B</xml>", now=NOW + 1)
    assert memory.admit(stamp, "42", b"<xml>follow by A</xml>", now=NOW + 2) is False  # WeChat's retry
    assert len(memory) == 1
    assert memory.admit(stamp, "43", b"<xml>follow by B</xml>", now=NOW) is True  # another push
    assert memory.admit(str(NOW + 1), "42", b"<xml>follow by B</xml>", now=NOW) is True
    assert len(memory) == 3


def test_a_pair_is_remembered_while_fresh_and_refused_as_stale_after() -> None:
    memory = PushMemory()
    stamp = str(NOW)
    memory.admit(stamp, "1", b"<xml>a</xml>", now=NOW - MAX_CLOCK_SKEW_SECONDS)  # WeChat's clock ahead
    with pytest.raises(Forbidden, match="replay"):
        memory.admit(stamp, "1", b"<xml>b</xml>", now=NOW + MAX_CLOCK_SKEW_SECONDS)
    # A body trickled in past the window is refused at admission, whatever its signature check said.
    with pytest.raises(Forbidden, match="stale"):
        memory.admit(stamp, "1", b"<xml>b</xml>", now=NOW + MAX_CLOCK_SKEW_SECONDS + 1)
    later = NOW + MAX_CLOCK_SKEW_SECONDS + REMEMBER_MARGIN_SECONDS + 1
    memory.admit(str(later), "2", b"<xml>c</xml>", now=later)
    assert len(memory) == 1  # the stale pair is forgotten


def test_a_full_memory_refuses_new_pairs_and_forgets_none_of_the_fresh_ones() -> None:
    memory = PushMemory(max_entries=2)
    stamp = str(NOW)
    memory.admit(stamp, "1", b"<xml>a</xml>", now=NOW)
    memory.admit(stamp, "2", b"<xml>b</xml>", now=NOW)
    with pytest.raises(Unavailable):
        memory.admit(stamp, "3", b"<xml>c</xml>", now=NOW)
    assert memory.admit(stamp, "1", b"<xml>a</xml>", now=NOW) is False  # retries still answered
    with pytest.raises(Forbidden, match="replay"):  # and forgeries still recognised
        memory.admit(stamp, "2", b"<xml>forged</xml>", now=NOW)
    assert len(memory) == 2
    later = NOW + MAX_CLOCK_SKEW_SECONDS + REMEMBER_MARGIN_SECONDS + 1
    assert memory.admit(str(later), "3", b"<xml>c</xml>", now=later) is True
    assert len(memory) == 1


def test_a_nonce_of_any_length_costs_the_same() -> None:
    memory = PushMemory()
    memory.admit(str(NOW), "n" * 100_000, b"<xml/>", now=NOW)
    with pytest.raises(Forbidden, match="replay"):
        memory.admit(str(NOW), "n" * 100_000, b"<xml>other</xml>", now=NOW)
    assert memory.admit(str(NOW), "n" * 99_999, b"<xml>other</xml>", now=NOW) is True


# --- safe mode -------------------------------------------------------------------------------------


def test_the_official_safe_mode_vector_decrypts_to_a_debug_demo_event() -> None:
    assert signature(SAFE_TOKEN, SAFE_TIMESTAMP, SAFE_NONCE) == SAFE_SIGNATURE
    check_signature(SAFE_TOKEN, SAFE_SIGNATURE, SAFE_TIMESTAMP, SAFE_NONCE, now=int(SAFE_TIMESTAMP))
    envelope = Envelope(SAFE_TOKEN, SAFE_KEY, SAFE_APPID)
    plaintext = envelope.open({"Encrypt": SAFE_ENCRYPT}, SAFE_MSG_SIGNATURE, SAFE_TIMESTAMP, SAFE_NONCE)
    event = json.loads(plaintext)  # the vector is from the JSON push format
    assert (event["MsgType"], event["Event"], event["debug_str"]) == ("event", "debug_demo", "hello world")


def test_the_safe_mode_vector_with_a_changed_part_is_refused() -> None:
    envelope = Envelope(SAFE_TOKEN, SAFE_KEY, SAFE_APPID)
    with pytest.raises(Forbidden):
        envelope.open({"Encrypt": SAFE_ENCRYPT}, SAFE_MSG_SIGNATURE, SAFE_TIMESTAMP, "415670742")
    with pytest.raises(Forbidden):
        envelope.open({"Encrypt": "A" + SAFE_ENCRYPT[1:]}, SAFE_MSG_SIGNATURE, SAFE_TIMESTAMP, SAFE_NONCE)
    with pytest.raises(Forbidden):
        envelope.open({"Encrypt": SAFE_ENCRYPT}, None, SAFE_TIMESTAMP, SAFE_NONCE)
    with pytest.raises(Forbidden, match="AppID"):  # signed with our token, but for another account
        Envelope(SAFE_TOKEN, SAFE_KEY, "wx0000000000000000").open(
            {"Encrypt": SAFE_ENCRYPT}, SAFE_MSG_SIGNATURE, SAFE_TIMESTAMP, SAFE_NONCE
        )


@pytest.mark.parametrize("garbage", ["not base64!", "QUJD", "A" * 64, "AAAA" * 7 + "=="])
def test_a_signed_encrypt_that_does_not_decrypt_is_bad_input(garbage: str) -> None:
    envelope = Envelope(TOKEN, AES_KEY, APPID)
    with pytest.raises(BadInput):
        envelope.open({"Encrypt": garbage}, sign(TOKEN, "1", "2", garbage), "1", "2")
    with pytest.raises(BadInput):
        envelope.open({}, sign(TOKEN, "1", "2", ""), "1", "2")


def test_seal_and_open_agree_with_the_spec() -> None:
    envelope = Envelope(TOKEN, AES_KEY, APPID)
    sealed = ElementTree.fromstring(envelope.seal("<xml>回复</xml>", nonce="42", timestamp=1700000000))
    fields = {child.tag: child.text or "" for child in sealed}
    assert fields["MsgSignature"] == sign(TOKEN, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
    assert (fields["TimeStamp"], fields["Nonce"]) == ("1700000000", "42")
    assert decrypt(fields["Encrypt"]) == ("<xml>回复</xml>", APPID)
    ours = encrypt("<xml>推送</xml>")  # encrypted by the spec, opened by wechatpy through the envelope
    assert envelope.open({"Encrypt": ours}, sign(TOKEN, "1", "2", ours), "1", "2") == "<xml>推送</xml>"


@pytest.mark.parametrize(
    ("key", "appid"), [("A" * 42, APPID), ("A" * 44, APPID), ("*" * 43, APPID), (AES_KEY, "")]
)
def test_a_bad_aes_key_or_missing_appid_fails_at_start(key: str, appid: str) -> None:
    with pytest.raises(ValueError, match="EncodingAESKey"):
        Envelope(TOKEN, key, appid)


# --- XML -------------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "lol">'
    + "".join(f'<!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">' for n in range(9))
    + "]><xml><Content>&j;</Content></xml>"
)
EXTERNAL_ENTITY = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><Content>&x;</Content></xml>'
EXTERNAL_DTD = (
    '<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><Content>x</Content></xml>'
)
PARAMETER_ENTITY = '<!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><xml/>'


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, "<!DOCTYPE xml><xml/>"],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity", "bare-doctype"],
)
def test_documents_with_a_dtd_are_refused_unexpanded(document: str) -> None:
    started = time.perf_counter()
    with pytest.raises(BadInput, match="DTD"):
        parse_fields(document.encode())
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"<xml>",
        b"<xml><a></b></xml>",
        b"not xml",
        b"\xff\xfe<\x00x",
        b"<xml>\x00</xml>",
        b"<html><a/></html>",
    ],
)
def test_malformed_or_foreign_xml_is_bad_input(document: bytes) -> None:
    with pytest.raises(BadInput):
        parse_fields(document)


@pytest.mark.parametrize("encoding", ["x-unknown", "gbk", "utf-7", "idna", "punycode", "rot13", "hex"])
def test_an_encoding_declaration_is_ignored_utf_8_is_read(encoding: str) -> None:
    # expat given bytes looked the named codec up: LookupError or ValueError, a 500.
    document = f'<?xml version="1.0" encoding="{encoding}"?><xml><Content>订阅</Content></xml>'
    assert parse_fields(document.encode()) == {"Content": "订阅"}


def test_bytes_that_are_not_utf_8_are_bad_input_whatever_the_declaration() -> None:
    for document in (
        '<?xml version="1.0" encoding="gbk"?><xml><Content>订阅</Content></xml>'.encode("gbk"),
        "<xml><Content>订阅</Content></xml>".encode("utf-16"),
    ):
        with pytest.raises(BadInput, match="UTF-8"):
            parse_fields(document)


@pytest.mark.parametrize(
    "inside",
    [
        "<a>" * MAX_XML_ELEMENTS + "</a>" * MAX_XML_ELEMENTS,
        "<a/>" * MAX_XML_ELEMENTS,
        "<a><b/><b/></a>" * (MAX_XML_ELEMENTS // 3 + 1),
    ],
    ids=["deep", "wide", "both"],
)
def test_xml_with_more_elements_than_any_push_is_bad_input(inside: str) -> None:
    document = f"<xml><MsgType>event</MsgType>{inside}</xml>".encode()
    assert len(document) <= MAX_XML_BYTES
    with pytest.raises(BadInput, match="elements"):
        parse_fields(document)


def test_xml_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(TooLarge):
        parse_fields(b"<xml><Content>" + b"x" * MAX_XML_BYTES + b"</Content></xml>")


def test_fields_and_messages() -> None:
    fields = parse_fields(
        b"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
        b"<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        b"<Content><![CDATA[ \xe9\x87\x8f\xe5\x8c\x96 ]]></Content><MsgId>123</MsgId></xml>"
    )
    message = Message.from_fields(fields)
    assert (message.account, message.openid, message.created, message.kind) == (
        "gh_1",
        "oUser",
        1700000000,
        "text",
    )
    assert message.content == " 量化 "
    assert message.delivery == "msg:123"
    event = Message.from_fields({**fields, "MsgType": "event", "MsgId": "", "Event": "subscribe"})
    assert event.delivery == "event:oUser:1700000000:subscribe"
    for broken in ({**fields, "CreateTime": "soon"}, {**fields, "FromUserName": ""}):
        with pytest.raises(BadInput):
            Message.from_fields(broken)


PUSH = {
    "ToUserName": "gh_1",
    "FromUserName": "oUser",
    "CreateTime": "1700000000",
    "MsgType": "text",
    "Content": "量化",
    "MsgId": "123",
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CreateTime", "9" * 5000),  # int() refuses over 4,300 digits with ValueError: was a 500
        ("CreateTime", "1" * 13),
        ("CreateTime", "-1700000000"),
        ("CreateTime", "１７００００００００"),
        ("FromUserName", "o" * 65),
        ("FromUserName", "   "),
        ("ToUserName", "g" * 65),
        ("MsgType", "t" * 65),
        ("MsgId", "7" * 5000),
        ("Event", "e" * 65),
    ],
    ids=lambda value: value[:12],
)
def test_a_field_out_of_its_bounds_is_bad_input(name: str, value: str) -> None:
    with pytest.raises(BadInput, match=name):
        Message.from_fields({**PUSH, name: value})


def test_a_long_text_is_cut_not_refused() -> None:
    message = Message.from_fields({**PUSH, "Content": "量化" * 20_000})
    assert message.content == ("量化" * 20_000)[:MAX_CONTENT_CHARS]


def test_a_text_reply_stays_well_formed_whatever_the_text() -> None:
    message = Message(account="gh_1", openid="oUser", created=1, kind="text")
    reply = text_reply(
        message, '结果 ]]><evil/> <a href="https://x.example/?a=1&b=2">链接</a>', now=1700000000
    )
    fields = {child.tag: child.text or "" for child in ElementTree.fromstring(reply)}
    assert (fields["ToUserName"], fields["FromUserName"], fields["MsgType"]) == ("oUser", "gh_1", "text")
    assert fields["CreateTime"] == "1700000000"
    assert fields["Content"] == '结果 ]]＞<evil/> <a href="https://x.example/?a=1&b=2">链接</a>'


def test_logs_see_only_the_start_of_an_openid() -> None:
    assert masked("oJianbaoTestUser0000000000001") == "oJia…"


# --- the search reply ------------------------------------------------------------------------------


def _hit(number: int, title: str) -> SearchHit:
    return SearchHit(
        date=dt.date(2021, 8, 1),
        section="论文",
        position=number,
        title=title,
        url=f'https://example.com/{number}?a=1&b="2"',
        snippet="",
        score=1.0,
        matched=(),
    )


def test_the_search_reply_drops_items_to_fit_and_counts_them_as_more() -> None:
    hits = tuple(_hit(number, f"量化论文{number} " + "长" * 80) for number in range(5))
    result = SearchResult(query="量化", hits=hits, total=12)

    def link(hit: SearchHit) -> str | None:
        return hit.url

    text, shown = search_reply(result, offset=0, links=link, archive_url=ARCHIVE, max_bytes=700)
    assert len(text.encode()) <= 700
    assert 1 <= shown < 5
    assert f"还有 {12 - shown} 条，发送『更多』或访问 " in text
    assert f'<a href="{ARCHIVE}">往期简报</a>' in text
    assert '<a href="https://example.com/0?a=1&b=%222%22">' in text  # a quote cannot end the attribute
    without_site, _ = search_reply(result, offset=0, links=link, archive_url="", max_bytes=700)
    assert "发送『更多』" in without_site
    assert "访问" not in without_site
    tiny, shown = search_reply(result, offset=0, links=link, archive_url=ARCHIVE, max_bytes=200)
    assert (len(tiny.encode()) <= 200, shown) == (True, 1)
    assert "<a " not in tiny


def test_more_is_offered_only_as_far_as_the_index_pages() -> None:
    """The index serves no items past MAX_OFFSET, so the reply must not promise them: 5,000 results are
    counted, the first MAX_OFFSET can be paged through."""
    hits = tuple(_hit(number, f"量化论文{number}") for number in range(5))
    result = SearchResult(query="量化", hits=hits, total=5000)

    first, _ = search_reply(result, offset=0, links=lambda hit: hit.url, archive_url=ARCHIVE)
    last, _ = search_reply(result, offset=MAX_OFFSET - 5, links=lambda hit: hit.url, archive_url=ARCHIVE)

    assert first.startswith("『量化』共找到 5000 条")
    assert f"还有 {MAX_OFFSET - 5} 条，发送『更多』" in first
    assert "更多" not in last


ARCHIVE = "https://jianbao.example/issues"
