"""The worker broadcasting to group robots through the fake webhooks, with the real per-robot limits on
both sides (JIANBAO_RATE_LIMITS true, the fakes refusing a 21st WeCom message within a minute and a 6th
Feishu one within a second): every robot gets every part of the issue once, in order, and a robot that was
removed from its group ends BLOCKED without holding anyone else back.

The demo issue 2020-07-02 renders into 5 WeCom messages (markdown of 2.2-4.0 KB) and 2 Feishu ones
(bodies of 19.7 KB and 0.6 KB). That is within one window of each robot's limit, so no robot waits and a
broadcast to 400 robots takes seconds; an issue of more than 20 WeCom messages would pace each robot over
minutes, so the test checks that assumption first rather than running for minutes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.broadcast.control import BroadcastControl, SendRequest
from bot.rendering import Renderer
from bot.settings import Settings
from channels.feishu.pacing import PUSHES_PER_SECOND as FEISHU_PER_SECOND
from channels.feishu.payload import FeishuPayload
from channels.registry import channel_registry
from channels.wecom.pacing import PUSHES_PER_MINUTE as WECOM_PER_MINUTE
from channels.wecom.payload import WeComPayload
from storage.broadcasts import BroadcastState, BroadcastStore, StartReport
from storage.deliveries import DeliveryLedger
from storage.issues import IssueStore
from storage.subscribers import ImportRow, SubscriberStatus, SubscriberStore
from tests.bot.broadcast.conftest import DAY, Robots, World, feishu_secret, feishu_token, wecom_key
from tests.fakes import feishu_api, wecom_api

CHANNELS = channel_registry()
WECOM_ROBOTS = 200
FEISHU_BOTS = 200
# What a group's owner may paste: the robot's webhook URL, which the address rules reduce to its key.
WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key="
FEISHU_URL = "https://open.feishu.cn/open-apis/bot/v2/hook/"
# The codes of the refusals that mean "too fast": WeCom's 45009, Feishu's 9499 ("too many request", also
# its "Bad Request") and 11232.
RATE_REFUSALS = {wecom_api.TOO_FAST[0], feishu_api.TOO_MANY[0], feishu_api.RATE_LIMITED[0]}


def _signed(n: int) -> bool:
    return n % 2 == 0


async def _subscribe(world: World, wecom: Sequence[int], feishu: Sequence[int]) -> SubscriberStore:
    """Active robot subscribers, through the channels' address rules as the CLI's import checks them:
    some as the webhook URL a group's owner copies, every other Feishu bot with its signing secret."""
    typed: list[tuple[str, str, str | None]] = [
        ("wecom", (WECOM_URL if n % 2 else "") + wecom_key(n), None) for n in wecom
    ]
    typed += [
        ("feishu", (FEISHU_URL if n % 3 else "") + feishu_token(n), feishu_secret(n) if _signed(n) else None)
        for n in feishu
    ]
    rows = [
        ImportRow(
            channel, CHANNELS.check_address(channel, address), (), CHANNELS.get(channel).check_secret(secret)
        )
        for channel, address, secret in typed
    ]
    store = SubscriberStore(world.db, keys=CHANNELS.address_key)
    await store.import_active(rows)
    return store


def _add_robots(robots: Robots, wecom: Sequence[int], feishu: Sequence[int]) -> None:
    for n in wecom:
        robots.wecom.add_robot(wecom_key(n))
    for n in feishu:
        robots.feishu.add_robot(feishu_token(n), feishu_secret(n) if _signed(n) else None)


async def _expected(world: World, settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """channel -> the request bodies the issue renders into with the worker's settings, as the fakes read
    them (JSON); Feishu's without the signature fields, which each push adds."""
    issue = await IssueStore(world.db).get(DAY)
    assert issue is not None
    renderer = Renderer(settings)
    wecom, feishu = renderer.render(issue, "wecom").payload, renderer.render(issue, "feishu").payload
    assert isinstance(wecom, WeComPayload)
    assert isinstance(feishu, FeishuPayload)
    return {
        "wecom": [json.loads(json.dumps(body)) for body in wecom.messages],
        "feishu": [json.loads(json.dumps(body)) for body in feishu.messages],
    }


async def _broadcast(world: World, settings: Settings) -> StartReport:
    outcome = await BroadcastControl(settings, world.db).send(SendRequest(DAY, ("wecom", "feishu")))
    assert isinstance(outcome, StartReport)
    return outcome


def _wrongly_served(
    robots: Robots, expected: dict[str, list[dict[str, Any]]], wecom: Sequence[int], feishu: Sequence[int]
) -> list[str]:
    """The robots whose accepted messages are not the issue's parts, each once and in order."""
    wrong = [f"wecom {n}" for n in wecom if robots.wecom.messages(wecom_key(n)) != expected["wecom"]]
    return wrong + [
        f"feishu {n}" for n in feishu if robots.feishu.messages(feishu_token(n)) != expected["feishu"]
    ]


async def test_four_hundred_robots_get_every_part_once_in_order_within_their_limits(
    world: World, robots: Robots
) -> None:
    settings = robots.settings(world.settings, rate_limits=True)
    assert settings.rate_limits
    assert robots.wecom.rate_limit == wecom_api.RateLimit()
    assert robots.feishu.rate_limit == feishu_api.RateLimit()
    expected = await _expected(world, settings)
    parts = {channel: len(bodies) for channel, bodies in expected.items()}
    # More than a window's worth would make the worker pace every robot for minutes (see the module doc).
    assert 2 <= parts["wecom"] <= WECOM_PER_MINUTE, parts
    assert 1 <= parts["feishu"] <= FEISHU_PER_SECOND, parts
    wecom, feishu = range(WECOM_ROBOTS), range(FEISHU_BOTS)
    _add_robots(robots, wecom, feishu)
    await _subscribe(world, wecom, feishu)
    report = await _broadcast(world, settings)
    assert report.pending == WECOM_ROBOTS + FEISHU_BOTS

    await world.run_worker(settings, seconds=45.0)

    # `broadcast status`: everyone sent, nothing left open.
    broadcasts = BroadcastStore(world.db)
    progress = await broadcasts.progress(report.broadcast.id)
    assert progress.counts == {"wecom": {"sent": WECOM_ROBOTS}, "feishu": {"sent": FEISHU_BOTS}}
    assert progress.uncertain == 0
    assert (await broadcasts.get(report.broadcast.id)).state == BroadcastState.DONE
    # The platforms refused nothing: not for rate, not for a signature, not for content.
    refusals = robots.wecom.errors + robots.feishu.errors
    assert not [error for error in refusals if error[1] in RATE_REFUSALS], refusals[:5]
    assert robots.wecom.throttled == robots.feishu.throttled == 0
    assert refusals == []
    # Every robot got every part, once, in order; no request was sent twice.
    assert not _wrongly_served(robots, expected, wecom, feishu)
    assert len(robots.wecom.received) == WECOM_ROBOTS * parts["wecom"]
    assert len(robots.feishu.received) == FEISHU_BOTS * parts["feishu"]
    # The signed bots' requests carried a signature (which the fake checked); the others' none.
    for n in feishu:
        signed = {("timestamp" in body, "sign" in body) for body in robots.feishu.accepted[feishu_token(n)]}
        assert signed == ({(True, True)} if _signed(n) else {(False, False)}), n


async def test_a_removed_robot_ends_blocked_and_no_other_robot_is_affected(
    world: World, robots: Robots
) -> None:
    settings = robots.settings(world.settings, rate_limits=True)
    expected = await _expected(world, settings)
    wecom, feishu = range(20), range(20)
    _add_robots(robots, wecom, feishu)
    gone = {"wecom": wecom_key(7), "feishu": feishu_token(8)}  # the Feishu one is a signed bot
    assert _signed(8)
    robots.wecom.remove_robot(gone["wecom"])
    robots.feishu.remove_robot(gone["feishu"])
    store = await _subscribe(world, wecom, feishu)
    report = await _broadcast(world, settings)

    await world.run_worker(settings)

    progress = await BroadcastStore(world.db).progress(report.broadcast.id)
    assert progress.counts == {"wecom": {"sent": 19, "failed": 1}, "feishu": {"sent": 19, "failed": 1}}
    rows = await DeliveryLedger(world.db).deliveries(report.broadcast.id)
    for row in rows:
        if row["state"] == "failed":
            subscriber = await store.get_by_id(row["subscriber_id"])
            assert subscriber is not None
            assert subscriber.address == gone[row["channel"]], row
            assert row["last_error"].startswith("blocked"), row
            assert (row["parts_done"], row["attempts"]) == (0, 1), row
    for channel, address in gone.items():
        subscriber = await store.get(channel, address)
        assert subscriber is not None
        assert subscriber.status == SubscriberStatus.BLOCKED
    assert await store.count(status=SubscriberStatus.ACTIVE) == 38
    # Each removed robot was asked once (BLOCKED is not retried); nothing else was refused.
    assert [(key, code) for key, code, _ in robots.wecom.errors] == [
        (gone["wecom"], wecom_api.INVALID_KEY[0])
    ]
    assert [(key, code) for key, code, _ in robots.feishu.errors] == [
        (gone["feishu"], feishu_api.TOKEN_INVALID[0])
    ]
    others = _wrongly_served(robots, expected, [n for n in wecom if n != 7], [n for n in feishu if n != 8])
    assert not others
