"""The hourly sign-up caps on their own, with a clock of the test's: the window slides, each cap holds,
and memory stays bounded whatever a hostile sender does."""

from __future__ import annotations

import pytest

from bot.signup_caps import WINDOW_SECONDS, Cap, Refusal, SignupCaps, client_key, mailbox_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def caps(clock: Clock, *, per_client: int = 10, per_hour: int = 500, per_mailbox: int = 5) -> SignupCaps:
    return SignupCaps(per_client=per_client, per_hour=per_hour, per_mailbox=per_mailbox, clock=clock)


def test_a_client_over_its_cap_waits_until_its_oldest_sign_up_leaves_the_window(clock: Clock) -> None:
    limits = caps(clock, per_client=2)
    assert limits.admit("192.0.2.1", "a@example.com") is None
    clock.now += 600
    assert limits.admit("192.0.2.1", "b@example.com") is None

    assert limits.admit("192.0.2.1", "c@example.com") == Refusal(Cap.CLIENT, 3000)
    assert limits.admit("192.0.2.2", "c@example.com") is None  # another client
    clock.now += 3000
    assert limits.admit("192.0.2.1", "c@example.com") is None
    assert limits.admit("192.0.2.1", "d@example.com") == Refusal(Cap.CLIENT, 600)


def test_the_overall_cap_counts_every_client(clock: Clock) -> None:
    limits = caps(clock, per_hour=3)
    for n in range(3):
        assert limits.admit(f"192.0.2.{n}", f"reader{n}@example.com") is None

    assert limits.admit("198.51.100.7", "new@example.com") == Refusal(Cap.OVERALL, int(WINDOW_SECONDS))


def test_one_mailbox_has_a_cap_of_its_own_across_clients_and_spellings(clock: Clock) -> None:
    limits = caps(clock, per_mailbox=2)
    assert limits.admit("192.0.2.1", "victim+1@example.com") is None
    assert limits.admit("192.0.2.2", "Vic.Tim@EXAMPLE.com") is None

    refusal = limits.admit("192.0.2.3", "victim+3@example.com")

    assert refusal is not None
    assert refusal.cap == Cap.MAILBOX
    assert limits.admit("192.0.2.3", "victim@example.org") is None  # another domain, another mailbox


def test_memory_is_bounded_by_the_overall_cap_however_many_clients_ask(clock: Clock) -> None:
    limits = caps(clock, per_hour=100)
    for n in range(20_000):  # every request from a new address, for a new mailbox
        clock.now += 0.01
        limits.admit(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", f"r{n}@example.com")
        assert len(limits) <= 100

    clock.now += WINDOW_SECONDS
    assert limits.admit("192.0.2.1", "last@example.com") is None
    assert len(limits) == 1  # everything older than the window is forgotten


def test_a_cap_of_zero_turns_sign_up_off(clock: Clock) -> None:
    assert caps(clock, per_client=0).admit("192.0.2.1", "a@example.com") == Refusal(Cap.CLIENT, 3600)
    assert caps(clock, per_hour=0).admit("192.0.2.1", "a@example.com") == Refusal(Cap.OVERALL, 3600)


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # the same machine's /64
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4 on a dual-stack socket
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_client_key(remote: str | None, key: str) -> None:
    assert client_key(remote) == key


@pytest.mark.parametrize(
    "address",
    [
        "reader@example.com",
        "Reader@Example.COM",
        "reader+news@example.com",
        "re.ad.er@example.com",
        "r.eader+a+b@example.com",
    ],
)
def test_spellings_of_one_mailbox_share_a_key(address: str) -> None:
    assert mailbox_key(address) == "reader@example.com"
