"""Hourly caps on email sign-ups, so that the form cannot be used to flood inboxes or our mail server.

Three sliding one-hour windows, each counting the sign-ups let through (every one may mail a link):

- per client: the request's peer address; an IPv6 client counts by its /64, which one machine is
  usually given whole (counting single IPv6 addresses would give it 2^64 quotas);
- per mailbox: one inbox reached through many spellings (a+1@x, a+2@x, a.b@x, ab@x all count as ab@x),
  whoever asks, so that many clients together cannot flood one person either;
- overall: what our mail server and its reputation can take.

A sign-up is counted whatever the address's state (new, pending, already subscribed), so a refusal
says nothing about who has subscribed. Only sign-ups let through are remembered, so memory is bounded
by the overall cap: at most `per_hour` entries, however many clients a hostile sender uses. The counts
live in this process: with several workers each has its own (the overall cap is then per worker).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

WINDOW_SECONDS = 3600.0
# A person retrying (a slow mail, a typo, leaving and coming back) stays well under this in an hour;
# a flood of +tag spellings from many clients is held to it.
SIGN_UPS_PER_MAILBOX = 5
# Providers give a machine a whole /64; most block lists treat it as one host.
IPV6_CLIENT_PREFIX = 64


class Cap(StrEnum):
    CLIENT = "client"
    MAILBOX = "mailbox"
    OVERALL = "overall"


@dataclass(frozen=True, slots=True)
class Refusal:
    cap: Cap
    retry_after: int  # whole seconds until a sign-up would be let through again


class SignupCaps:
    """`clock` returns monotonic seconds; tests pass their own."""

    def __init__(
        self,
        *,
        per_client: int,
        per_hour: int,
        per_mailbox: int = SIGN_UPS_PER_MAILBOX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {Cap.CLIENT: per_client, Cap.MAILBOX: per_mailbox, Cap.OVERALL: per_hour}
        self._clock = clock
        self._admitted: deque[tuple[float, str, str]] = deque()  # (time, client, mailbox), oldest first
        self._by_key: dict[Cap, dict[str, deque[float]]] = {Cap.CLIENT: {}, Cap.MAILBOX: {}}

    def __len__(self) -> int:
        """Sign-ups remembered now (at most the overall cap)."""
        return len(self._admitted)

    def admit(self, remote: str | None, address: str) -> Refusal | None:
        """Count a sign-up from the peer `remote` (request.remote) for `address`, or say which cap
        refuses it and for how long."""
        now = self._clock()
        self._forget_before(now - WINDOW_SECONDS)
        keys = {Cap.CLIENT: client_key(remote), Cap.MAILBOX: mailbox_key(address)}
        if len(self._admitted) >= self._limits[Cap.OVERALL]:
            return self._refusal(Cap.OVERALL, self._admitted[0][0] if self._admitted else now, now)
        for cap, key in keys.items():
            times = self._by_key[cap].get(key)
            count = len(times) if times else 0
            if count >= self._limits[cap]:
                return self._refusal(cap, times[0] if times else now, now)
        self._admitted.append((now, keys[Cap.CLIENT], keys[Cap.MAILBOX]))
        for cap, key in keys.items():
            self._by_key[cap].setdefault(key, deque()).append(now)
        return None

    def _forget_before(self, horizon: float) -> None:
        # Entries are appended in time order, so the oldest overall is also the oldest of its own keys.
        while self._admitted and self._admitted[0][0] <= horizon:
            _, client, mailbox = self._admitted.popleft()
            for cap, key in ((Cap.CLIENT, client), (Cap.MAILBOX, mailbox)):
                times = self._by_key[cap][key]
                times.popleft()
                if not times:
                    del self._by_key[cap][key]

    @staticmethod
    def _refusal(cap: Cap, oldest: float, now: float) -> Refusal:
        return Refusal(cap, max(1, math.ceil(oldest + WINDOW_SECONDS - now)))


def client_key(remote: str | None) -> str:
    """Who is asking, as counted: the IP address, an IPv6 one by its /64."""
    if not remote:
        return "unknown"  # not over TCP (a Unix socket): everyone behind it shares one quota
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


def mailbox_key(address: str) -> str:
    """The inbox an address reaches, as far as the common providers go: case, +tags and dots in the
    local part ignored. Over-merging two real mailboxes only makes them share a quota."""
    local, _, domain = address.lower().rpartition("@")
    return f"{local.partition('+')[0].replace('.', '')}@{domain}"
