"""Injected faults for the fake platform servers: which request fails, and how, decided by a seeded plan.

A `FaultPlan` names faults with a probability each (`rates`, e.g. {"500": 0.05, "drop": 0.03}); each fake
says which names it knows (the Telegram fake: 500, drop, slow, 429; WeChat: 500, drop, slow, 45009, -1;
SMTP: 421, 451, drop, slow) and how it plays them. The fake asks `draw(key)` once per request that may
fail, with the key the request is about (a chat id, an openid, the recipients of a mail).

The outcome of the n-th request about one key depends only on (seed, key, n): each draw seeds its own
random.Random. A broadcast sends concurrently, so requests reach the fake in an order that changes from run
to run; one random stream shared by all keys would then hand the faults to different chats each run. Per
key, the same seed gives every chat the same faults whatever the interleaving, and a failing test can be
rerun as it was.

`max_per_key` caps how many faults one key can get; after that its requests go through untouched, so that
a sender that retries always gets every message delivered in the end.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field

DEFAULT_SLOW_SECONDS = 3.0


@dataclass
class FaultPlan:
    seed: int = 0
    rates: Mapping[str, float] = field(default_factory=dict)
    slow_seconds: float = DEFAULT_SLOW_SECONDS  # how late a "slow" answer comes
    retry_after: int = 1  # what an injected flood answer (Telegram 429) asks to wait
    max_per_key: int | None = None  # faults one key can get at most; None: no cap
    counts: Counter[str] = field(default_factory=Counter, init=False)  # faults injected so far, by name

    def __post_init__(self) -> None:
        if any(not 0.0 <= rate <= 1.0 for rate in self.rates.values()):
            raise ValueError(f"fault rates must be within 0..1: {dict(self.rates)}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to more than 1: {dict(self.rates)}")
        if self.slow_seconds < 0 or self.retry_after < 1:
            raise ValueError("slow_seconds must be >= 0 and retry_after >= 1")
        if self.max_per_key is not None and self.max_per_key < 0:
            raise ValueError("max_per_key must be >= 0")
        # Sorted, so that the same rates written in another order give the same draws.
        self._thresholds: list[tuple[float, str]] = []
        cumulative = 0.0
        for name, rate in sorted(self.rates.items()):
            cumulative += rate
            self._thresholds.append((cumulative, name))
        self._attempts: dict[Hashable, int] = {}
        self._hits: dict[Hashable, int] = {}
        # The SMTP fake draws in aiosmtpd's thread while a test may read `counts` in its own.
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, spec: str, **options: float | int | None) -> FaultPlan:
        """A plan from the command line form "500=0.05,drop=0.03,slow=0.03" (and FaultPlan's keywords)."""
        rates: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, separator, value = item.partition("=")
            if not separator or not name.strip():
                raise ValueError(f"expected NAME=RATE, got {item!r}")
            rates[name.strip()] = float(value)
        return cls(rates=rates, **options)  # type: ignore[arg-type]

    def check(self, known: Collection[str]) -> None:
        """Refuse a plan with faults the fake that gets it cannot play (a typo would inject nothing)."""
        unknown = sorted(set(self.rates) - set(known))
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; this fake knows {sorted(known)}")

    def draw(self, key: Hashable = None) -> str | None:
        """The fault to inject into this request about `key`, or None to let it through."""
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            if self.max_per_key is not None and self._hits.get(key, 0) >= self.max_per_key:
                return None
            # A str seed is hashed with SHA-512: the same in every process, unlike hash().
            roll = random.Random(f"{self.seed}/{key!r}/{attempt}").random()
            for threshold, name in self._thresholds:
                if roll < threshold:
                    self._hits[key] = self._hits.get(key, 0) + 1
                    self.counts[name] += 1
                    return name
            return None
