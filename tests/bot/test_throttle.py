"""The window counter behind the admin API's throttle: a limit per key that recovers, in bounded memory."""

from __future__ import annotations

import pytest

from bot.throttle import WindowCounter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_over_its_limit_waits_until_its_oldest_event_leaves_the_window() -> None:
    clock = Clock()
    counter = WindowCounter(3, 60.0, clock=clock)
    for at in (1000.0, 1010.0, 1030.0):
        clock.now = at
        assert counter.retry_after("a") == 0.0
        counter.add("a")
    clock.now = 1050.0
    assert counter.retry_after("a") == pytest.approx(10.0)  # until 1060, when the event of 1000 leaves
    assert counter.retry_after("b") == 0.0  # keys are counted apart
    clock.now = 1060.0
    assert counter.retry_after("a") == 0.0
    counter.add("a")
    assert counter.retry_after("a") == pytest.approx(10.0)  # 1010, 1030, 1060: until 1070


def test_memory_holds_at_most_max_keys_forgetting_the_least_recent() -> None:
    clock = Clock()
    counter = WindowCounter(1, 60.0, max_keys=100, clock=clock)
    counter.add("first")
    for key in range(1000):
        counter.add(f"attacker-{key}")
    assert len(counter._events) == 100
    assert counter.retry_after("first") == 0.0  # forgotten: its memory went to newer keys
    assert counter.retry_after("attacker-999") == pytest.approx(60.0)


def test_keys_whose_events_expired_are_dropped() -> None:
    clock = Clock()
    counter = WindowCounter(2, 5.0, clock=clock)
    counter.add("a")
    clock.now += 6
    assert counter.retry_after("a") == 0.0
    assert "a" not in counter._events


def test_a_counter_needs_a_limit_and_a_window() -> None:
    with pytest.raises(ValueError, match="limit of 1 or more"):
        WindowCounter(0, 60.0)
