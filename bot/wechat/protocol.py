"""The WeChat webhook protocol without the web server: signatures, freshness, the memory of signed pushes
against replays, safe XML, the AES envelope of safe mode and text replies. The clock is always an
argument, so the official test vectors, whose timestamps are long past, can be checked as they are.

Sources: docs/channels.md, "Webhook signature" and "Safe mode" (消息加解密说明, 2024:
https://developers.weixin.qq.com/doc/subscription/guide/dev/push/encryption.html).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import struct
import xml.etree.ElementTree as ET  # only for the ParseError type; parsing goes through defusedxml
from collections.abc import Mapping
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException
from wechatpy.crypto import WeChatCrypto  # type: ignore[import-untyped]
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException  # type: ignore[import-untyped]
from wechatpy.replies import TextReply  # type: ignore[import-untyped]
from wechatpy.utils import WeChatSigner  # type: ignore[import-untyped]

from content.errors import BadInput, JianbaoError, TooLarge, Unavailable

# WeChat's pushes are a few hundred bytes; nothing it sends comes near this. Checked before parsing.
MAX_XML_BYTES = 64 * 1024
# WeChat's largest documented push (MASSSENDJOBFINISH with eight articles' copyright results) has about
# 100 elements. Far more is not a push, whether nested thousands deep or thousands wide: refused.
MAX_XML_ELEMENTS = 1000
# A request signed more than this far from our clock, either way, is a replay (or a broken clock): refused.
MAX_CLOCK_SKEW_SECONDS = 5 * 60
# EncodingAESKey: 43 base64 characters, 32 bytes once "=" is added (docs/channels.md, "Safe mode";
# https://developers.weixin.qq.com/doc/oplatform/en/Third-party_Platforms/Message_Encryption/Technical_Plan.html).
AES_KEY_CHARS = 43
# Unix seconds have 10 digits until 2286; int() of a longer string only costs time (and refuses over 4,300
# digits with ValueError), so anything past 12 digits is refused first.
MAX_TIMESTAMP_DIGITS = 12
# Ids and names in a push: openids are 28 characters, account ids 15, MsgId a 64-bit number, event and
# message types at most ~25. They become cache keys and log lines, so a longer one is refused.
MAX_NAME_CHARS = 64
# What is kept of a text message. Search reads its first 64 characters and commands are single words; a
# long text is cut, not refused, because a refusal shows the reader "该公众号暂时无法提供服务".
MAX_CONTENT_CHARS = 1000
# The signed pushes one process remembers against replays (see PushMemory): each costs about 120 bytes, so
# this is ~15 MB, and holds the six minutes a pair is kept at a steady 330 pushes per second.
MAX_REMEMBERED_PUSHES = 120_000
# A pair is remembered this long after its timestamp goes stale, so that the wall clock stepped back by
# that much (an NTP correction) does not make a forgotten pair fresh again.
REMEMBER_MARGIN_SECONDS = 60


class Forbidden(JianbaoError):
    """A request that is not provably from WeChat, or not from now: nothing of it is processed."""

    status = 403
    kind = "forbidden"


def signature(token: str, *parts: str) -> str:
    """sha1 of the sorted strings: `signature`: (token, timestamp, nonce), `msg_signature` + Encrypt."""
    signer = WeChatSigner()
    signer.add_data(token, *parts)
    return str(signer.signature)


def check_signature(
    token: str, signed: str | None, timestamp: str | None, nonce: str | None, *, now: float
) -> None:
    """Raise Forbidden unless `signed` signs (token, timestamp, nonce) and the timestamp is fresh.

    wechatpy's own check_signature compares with `!=`; comparing in constant time costs nothing.
    """
    if not signed or not timestamp or nonce is None:
        raise Forbidden("missing signature, timestamp or nonce")
    if not hmac.compare_digest(signature(token, timestamp, nonce).encode(), signed.encode()):
        raise Forbidden("bad signature")
    check_fresh(timestamp, now=now)


def check_fresh(timestamp: str, *, now: float) -> int:
    """The timestamp as an int; Forbidden when it is not one or is more than 5 minutes from `now`."""
    if not _is_unix_time(timestamp):
        raise Forbidden("bad timestamp")
    moment = int(timestamp)
    if abs(now - moment) > MAX_CLOCK_SKEW_SECONDS:
        raise Forbidden("stale timestamp: replayed or clock skew over 5 minutes")
    return moment


def _is_unix_time(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS


class PushMemory:
    """The signed pushes of the last few minutes, each (timestamp, nonce) bound to a digest of its body.

    WeChat's `signature` covers token, timestamp and nonce but not the body: without this memory, one
    signed URL seen in a log or on the wire lets anyone post any body (a follow, 退订 for any openid...) for
    as long as the timestamp is fresh. WeChat retries a push it got no answer to, maybe with the same URL,
    so the same pair with a byte-identical body is a redelivery (admitted again: the delivery cache gives it
    the same reply), and with another body a forgery (Forbidden, nothing remembered).

    A pair is forgotten once its timestamp is stale, and `admit` checks freshness again by the clock of the
    moment, so a body trickled in past the window cannot slip through after its pair was forgotten. Pairs
    live in one dict per timestamp second, and a heap of those seconds (a few hundred at most) finds the
    stale ones: constant time per push, no I/O. When MAX_REMEMBERED_PUSHES fresh pairs are held, a new pair
    is refused (Unavailable, 503) rather than an old one forgotten: forgetting would reopen the replay it
    guards against, and WeChat retries a refusal. One memory per process (see bot/wechat/webhook.py).
    """

    def __init__(self, max_entries: int = MAX_REMEMBERED_PUSHES) -> None:
        self._max_entries = max_entries
        self._by_second: dict[int, dict[bytes, bytes]] = {}
        self._seconds: list[int] = []  # a heap of the keys of _by_second
        self._count = 0

    def admit(self, timestamp: str, nonce: str, body: bytes, *, now: float) -> bool:
        """True for a new pair, False for a redelivery; Forbidden for a stale pair or another body."""
        second = check_fresh(timestamp, now=now)
        self._forget_stale(now)
        key = _digest(nonce.encode(), size=8)  # fixed size however long a nonce WeChat signs
        digest = _digest(body, size=16)
        pushes = self._by_second.get(second)
        remembered = pushes.get(key) if pushes is not None else None
        if remembered is not None:
            if not hmac.compare_digest(remembered, digest):
                raise Forbidden("signed URL reused with another body: a replay")
            return False
        if self._count >= self._max_entries:
            raise Unavailable("too many WeChat pushes in the last minutes to check them for replays")
        if pushes is None:
            pushes = self._by_second[second] = {}
            heapq.heappush(self._seconds, second)
        pushes[key] = digest
        self._count += 1
        return True

    def __len__(self) -> int:
        return self._count

    def _forget_stale(self, now: float) -> None:
        oldest_fresh = now - MAX_CLOCK_SKEW_SECONDS - REMEMBER_MARGIN_SECONDS
        while self._seconds and self._seconds[0] < oldest_fresh:
            self._count -= len(self._by_second.pop(heapq.heappop(self._seconds)))


def _digest(data: bytes, *, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size).digest()


def parse_fields(data: bytes) -> dict[str, str]:
    """The children of a WeChat <xml> document as {tag: text}, parsed without DTDs or entities.

    defusedxml with forbid_dtd refuses a document at its DOCTYPE, so neither an entity bomb nor an external
    entity is ever expanded or fetched. Nested elements (ScanCodeInfo...) are kept as their own text only.
    WeChat sends UTF-8: the bytes are decoded here and the parser gets text, so an XML declaration naming
    another encoding is ignored (expat given bytes would look that codec up, and "gbk", "idna" or an
    unknown name raised ValueError or LookupError: a 500).
    """
    if len(data) > MAX_XML_BYTES:
        raise TooLarge(f"XML body over {MAX_XML_BYTES // 1024} KB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadInput("XML that is not UTF-8") from None
    try:
        root = SafeET.fromstring(text, forbid_dtd=True)
    except DefusedXmlException:
        raise BadInput("XML with a DTD or entities is refused") from None
    except ET.ParseError:
        raise BadInput("malformed XML") from None
    if root.tag != "xml":
        raise BadInput("not a WeChat message: the root element must be <xml>")
    if len(list(itertools.islice(root.iter(), MAX_XML_ELEMENTS + 1))) > MAX_XML_ELEMENTS:
        raise BadInput(f"not a WeChat message: over {MAX_XML_ELEMENTS} XML elements")
    return {child.tag: child.text or "" for child in root}


_REQUIRED_FIELDS = ("ToUserName", "FromUserName", "MsgType")
_NAMED_FIELDS = (*_REQUIRED_FIELDS, "MsgId", "Event")


@dataclass(frozen=True, slots=True)
class Message:
    """One push from WeChat: a user's message or an event."""

    account: str  # ToUserName: our official account's id
    openid: str  # FromUserName: the user
    created: int  # CreateTime
    kind: str  # MsgType: text, image, event...
    msg_id: str = ""  # MsgId (messages only)
    content: str = ""  # Content (text messages)
    event: str = ""  # Event (events), lower case: subscribe, unsubscribe, click...

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Message:
        """The message in a push's fields; BadInput for a missing, overlong or malformed one."""
        names = {name: fields.get(name, "").strip() for name in _NAMED_FIELDS}
        missing = [name for name in _REQUIRED_FIELDS if not names[name]]
        if missing:
            raise BadInput(f"WeChat message without {', '.join(missing)}")
        overlong = [name for name, value in names.items() if len(value) > MAX_NAME_CHARS]
        if overlong:
            raise BadInput(f"WeChat message with {', '.join(overlong)} over {MAX_NAME_CHARS} characters")
        created = fields.get("CreateTime", "").strip()
        if not _is_unix_time(created):
            raise BadInput(f"bad CreateTime: not Unix seconds of {MAX_TIMESTAMP_DIGITS} digits at most")
        return cls(
            account=names["ToUserName"],
            openid=names["FromUserName"],
            created=int(created),
            kind=names["MsgType"].lower(),
            msg_id=names["MsgId"],
            content=fields.get("Content", "")[:MAX_CONTENT_CHARS],
            event=names["Event"].lower(),
        )

    @property
    def delivery(self) -> str:
        """What identifies a delivery across retries: MsgId, or for events sender + time (+ event)."""
        if self.msg_id:
            return f"msg:{self.msg_id}"
        return f"event:{self.openid}:{self.created}:{self.event}"


def text_reply(message: Message, text: str, *, now: int) -> str:
    """The passive reply XML answering `message` with `text`."""
    reply = TextReply(
        source=_cdata(message.account), target=_cdata(message.openid), content=_cdata(text), time=now
    )
    return str(reply.render())


def _cdata(text: str) -> str:
    # wechatpy writes fields as CDATA without escaping: "]]>" would end the section early.
    return text.replace("]]>", "]]＞")


class Envelope:
    """Safe mode (encrypt_type=aes): opens pushes and seals replies with the account's EncodingAESKey."""

    def __init__(self, token: str, aes_key: str, appid: str) -> None:
        if len(aes_key) != AES_KEY_CHARS or not appid:
            raise ValueError(f"safe mode needs a {AES_KEY_CHARS}-character EncodingAESKey and the AppID")
        self._token = token
        try:
            self._crypto = WeChatCrypto(token, aes_key, appid)
        except (ValueError, AssertionError):  # not base64, or not 32 bytes once decoded
            raise ValueError("the EncodingAESKey is not valid base64 of 32 bytes") from None

    def open(self, fields: Mapping[str, str], msg_signature: str | None, timestamp: str, nonce: str) -> str:
        """The plaintext inside an encrypted push, after checking `msg_signature` over its Encrypt field."""
        encrypted = fields.get("Encrypt", "")
        if not encrypted:
            raise BadInput("encrypted push without Encrypt")
        expected = signature(self._token, timestamp, nonce, encrypted)
        if not msg_signature or not hmac.compare_digest(expected.encode(), msg_signature.encode()):
            raise Forbidden("bad msg_signature")
        try:
            return str(self._crypto.decrypt_message({"Encrypt": encrypted}, msg_signature, timestamp, nonce))
        except InvalidAppIdException:
            raise Forbidden("encrypted for another AppID") from None
        except InvalidSignatureException:  # checked above; kept in case wechatpy's check ever differs
            raise Forbidden("bad msg_signature") from None
        except (ValueError, TypeError, IndexError, struct.error):  # bad base64, padding, length or UTF-8
            raise BadInput("Encrypt does not decrypt") from None

    def seal(self, plaintext: str, *, nonce: str, timestamp: int) -> str:
        """The encrypted reply <xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml> for `plaintext`."""
        return str(self._crypto.encrypt_message(plaintext, nonce, str(timestamp)))


def masked(openid: str) -> str:
    """An openid as logs may show it: enough to tell users apart in one incident, not to message them."""
    return openid[:4] + "…"
