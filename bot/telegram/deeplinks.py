"""Deep links: t.me/<bot>?start=<payload> opens the bot and sends "/start <payload>".

Telegram allows 1-64 characters of [A-Za-z0-9_-] (Bot API, "Deep linking"). Ours are a command word
(subscribe, unsubscribe, latest, help) or "q_" + the URL-safe base64 of a query's UTF-8, which fits 46
bytes: about 15 Chinese characters, plenty for a keyword. Anything else is treated as no payload.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

MAX_PAYLOAD_CHARS = 64
_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QUERY_PREFIX = "q_"
ACTIONS = ("subscribe", "unsubscribe", "latest", "help")


@dataclass(frozen=True, slots=True)
class StartRequest:
    action: str  # one of ACTIONS, or "search"
    query: str = ""


def search_payload(query: str) -> str | None:
    """The payload of a link that opens the bot on this search; None when the query is too long for one."""
    encoded = base64.urlsafe_b64encode(query.encode()).decode().rstrip("=")
    payload = _QUERY_PREFIX + encoded
    return payload if query and len(payload) <= MAX_PAYLOAD_CHARS else None


def read_payload(payload: str) -> StartRequest | None:
    if not _PAYLOAD.fullmatch(payload):
        return None
    if payload in ACTIONS:
        return StartRequest(payload)
    if not payload.startswith(_QUERY_PREFIX):
        return None
    encoded = payload[len(_QUERY_PREFIX) :]
    try:
        query = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError):  # not base64, or not UTF-8 (UnicodeDecodeError is a ValueError)
        return None
    return StartRequest("search", query) if query.strip() else None
