"""The WeChat webhook protocol without the web server: signatures, freshness, safe XML, the AES envelope
of safe mode and text replies. Pure functions (the clock is an argument), so the official test vectors,
whose timestamps are long past, can be checked as they are.

Sources: shared/notes/channels.md (developers.weixin.qq.com, 2024 encryption guide).
"""

from __future__ import annotations

import hmac
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

from content.errors import BadInput, JianbaoError, TooLarge

# WeChat's pushes are a few hundred bytes; nothing it sends comes near this. Checked before parsing.
MAX_XML_BYTES = 64 * 1024
# A request signed more than this far from our clock, either way, is a replay (or a broken clock): refused.
MAX_CLOCK_SKEW_SECONDS = 5 * 60
# EncodingAESKey: 43 base64 characters, 32 bytes once "=" is added (channels.md, safe mode).
AES_KEY_CHARS = 43


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
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Forbidden("bad timestamp")
    moment = int(timestamp)
    if abs(now - moment) > MAX_CLOCK_SKEW_SECONDS:
        raise Forbidden("stale timestamp: replayed or clock skew over 5 minutes")
    return moment


def parse_fields(data: bytes) -> dict[str, str]:
    """The children of a WeChat <xml> document as {tag: text}, parsed without DTDs or entities.

    defusedxml with forbid_dtd refuses a document at its DOCTYPE, so neither an entity bomb nor an external
    entity is ever expanded or fetched. Nested elements (ScanCodeInfo...) are kept as their own text only.
    """
    if len(data) > MAX_XML_BYTES:
        raise TooLarge(f"XML body over {MAX_XML_BYTES // 1024} KB")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise BadInput("XML with a DTD or entities is refused") from None
    except ET.ParseError:
        raise BadInput("malformed XML") from None
    if root.tag != "xml":
        raise BadInput("not a WeChat message: the root element must be <xml>")
    return {child.tag: child.text or "" for child in root}


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
        missing = [name for name in ("ToUserName", "FromUserName", "MsgType") if not fields.get(name)]
        if missing:
            raise BadInput(f"WeChat message without {', '.join(missing)}")
        created = fields.get("CreateTime", "").strip()
        if not created.isascii() or not created.isdigit():
            raise BadInput("WeChat message with a bad CreateTime")
        return cls(
            account=fields["ToUserName"].strip(),
            openid=fields["FromUserName"].strip(),
            created=int(created),
            kind=fields["MsgType"].strip().lower(),
            msg_id=fields.get("MsgId", "").strip(),
            content=fields.get("Content", ""),
            event=fields.get("Event", "").strip().lower(),
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
