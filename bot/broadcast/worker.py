"""The broadcast worker: claim due deliveries, look each one's channel up, deliver, record what happened.

Per delivery (a task; `concurrency` at once) the channel pushes what is left of it
(channels/channel.py `Channel.deliver`): its own rules decide the parts (Telegram's messages one per
second per chat, WeChat's draft then one mass send with a clientmsgid fixed per broadcast, a mail through
the SMTP pool, a robot's messages within its 20 a minute), and every part it reports through the `Pace`
is recorded before the next goes out, so a worker that dies mid-issue is continued, not restarted, by the
next one. The channel's shared rate (over all workers) is the `Pace`'s slot.

Outcomes: sent (maybe with `uncertain`: a timeout left it open, and it is never resent), retried with
exponential backoff (or the platform's retry_after, which for a channel that throttles the whole account
also holds its shared rate so every worker pauses), failed (content refused, blocked, bounced, out of
attempts) or skipped. A blocked chat makes its subscriber BLOCKED; hard bounces are counted and make the
subscriber BOUNCED at the limit. A channel that cannot send at all (ChannelDown) is paused for a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.broadcast.payloads import PayloadCache
from bot.broadcast.recorder import Recorder
from bot.tokens import Purpose, ReaderIds, SubscriberTokens
from channels.base import ChannelDown, PushResult, PushStatus
from channels.channel import Channel, Delivery
from content.errors import JianbaoError
from storage.broadcasts import BroadcastStore, DeliveryKind, DeliveryState
from storage.deliveries import Claim, DeliveryLedger, Result
from storage.ratelimit import Rate, Unlimited
from storage.subscribers import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 3600.0
HANDED_BACK = "handed back: the worker stopped"
# A channel that cannot send at all (token refused) is left alone this long before trying again.
CHANNEL_DOWN_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    concurrency: int = 64
    claim_batch: int = 100
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    max_attempts: int = 8
    retry_seconds: float = 30.0
    # On a stop signal, deliveries in hand get this long to finish; the rest are handed back.
    stop_seconds: float = 20.0


@dataclass
class Senders:
    """The channels this worker sends on, each with its open sender."""

    open: dict[str, tuple[Channel[Any], Any]] = field(default_factory=dict)
    # A channel with `personal_links` needs both to build each subscriber's unsubscribe link.
    tokens: SubscriberTokens | None = None
    public_url: str = ""
    # Per-reader clicks (JIANBAO_TRACK_SUBSCRIBERS): signs the reader id of a personal mail's tracked links.
    readers: ReaderIds | None = None

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.open)


class _DeliveryPace:
    """One delivery's side of the Pace protocol: the channel's shared rate, and its progress recorded."""

    def __init__(self, worker: BroadcastWorker, claim: Claim, rate: Rate) -> None:
        self._worker = worker
        self._claim = claim
        self._rate = rate

    async def slot(self) -> None:
        await self._rate.acquire()

    async def reached(self, parts_done: int, message_id: str | None, *, uncertain: bool = False) -> None:
        await self._worker.record_progress(self._claim, parts_done, message_id, uncertain)


class _TestSendPace:
    """An editor's test send: the channel's shared rate, and progress nowhere (nothing is in the ledger)."""

    def __init__(self, rate: Rate) -> None:
        self._rate = rate

    async def slot(self) -> None:
        await self._rate.acquire()

    async def reached(self, parts_done: int, message_id: str | None, *, uncertain: bool = False) -> None:
        return None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BroadcastWorker:
    def __init__(
        self,
        *,
        name: str,
        broadcasts: BroadcastStore,
        ledger: DeliveryLedger,
        payloads: PayloadCache,
        senders: Senders,
        rates: Mapping[str, Rate] | None = None,
        config: WorkerConfig | None = None,
    ) -> None:
        self.name = name
        self._broadcasts = broadcasts
        self._ledger = ledger
        self._payloads = payloads
        self._senders = senders
        self._rates = dict(rates or {})
        self._config = config or WorkerConfig()
        self._recorder = Recorder(ledger, name, self._config.lease_seconds)
        self._active: dict[int, asyncio.Task[None]] = {}
        self._down_until: dict[str, float] = {}
        # delivery id -> (parts done, message ids) as far as a running delivery got: what an unexpected
        # error puts back, so that a retry does not resend what already went out.
        self._reached: dict[int, tuple[int, str | None]] = {}
        self._stopping = False
        self.sent = 0  # deliveries this worker finished as sent (for logs and benchmarks)

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Work until `stop` is set (or, with `until_idle`, until no running broadcast has anything left),
        then finish the deliveries in hand and write their results."""
        recorder = asyncio.create_task(self._recorder.run())
        quiet = asyncio.Event()  # set when the worker stops: the heartbeat returns between two renewals
        heartbeat = asyncio.create_task(self._heartbeat(quiet))
        stopping = asyncio.create_task(stop.wait())
        config = self._config
        try:
            while not stop.is_set():
                room = config.concurrency - len(self._active)
                claims: list[Claim] = []
                if room >= max(1, min(config.claim_batch, config.concurrency) // 2) or not self._active:
                    claims = await self._ledger.claim(
                        self.name, self._open_channels(), min(room, config.claim_batch), config.lease_seconds
                    )
                    for claim in claims:
                        self._start(claim)
                if claims and len(self._active) < config.concurrency:
                    continue  # there may be more due right now
                if not self._active and not claims and await self._finish_broadcasts() and until_idle:
                    return
                waiting: set[asyncio.Future[Any]] = {*self._active.values(), stopping}
                await asyncio.wait(waiting, timeout=config.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self._finish_or_hand_back()
            # Stopped, not cancelled: a database write cancelled halfway can leave SQLite's write lock
            # with a connection nobody will finish.
            quiet.set()
            self._recorder.stop()
            await asyncio.gather(heartbeat, recorder)
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            await self._recorder.close()

    async def _finish_or_hand_back(self) -> None:
        """Let the deliveries in hand finish for up to `stop_seconds` (a Telegram delivery needs a second
        or two per part), then stop the rest where they got to: they are recorded as pending from their
        last recorded part, for any worker to continue at once, instead of waiting out their lease."""
        self._stopping = True
        tasks = list(self._active.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self._config.stop_seconds)
        if late:
            log.warning("stopping: handing back %d deliveries not finished in time", len(late))
            for task in late:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def send_one(self, channel: str, address: str, date: dt.date) -> Result:
        """Send the issue of `date` to one address now, outside any broadcast (an editor's test send);
        nothing is written to the ledger. A test mail's unsubscribe link names no subscriber."""
        claim = Claim(
            id=0,
            broadcast_id=0,
            issue_date=date,
            channel=channel,
            kind=DeliveryKind.DIRECT,
            subscriber_id=0,
            address=address,
            parts_done=0,
            attempts=self._config.max_attempts,
            message_id=None,
            address_key=address,
        )
        if channel not in self._senders.open:
            raise ChannelDown(f"{channel} is not configured for sending")
        return await self._send(claim, test=True)

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._deliver(claim))
        self._active[claim.id] = task
        task.add_done_callback(lambda _: self._active.pop(claim.id, None))

    def _open_channels(self) -> list[str]:
        now = time.monotonic()
        return [name for name in self._senders.open if self._down_until.get(name, 0.0) <= now]

    async def _finish_broadcasts(self) -> bool:
        """Mark running broadcasts with nothing left as done; True when none is running any more."""
        running = await self._ledger.running_broadcasts()
        still = 0
        for broadcast_id in running:
            if await self._broadcasts.finish_if_done(broadcast_id):
                log.info("broadcast %d: done", broadcast_id)
            else:
                still += 1
        return still == 0

    async def _heartbeat(self, quiet: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(quiet.wait(), self._config.lease_seconds / 3)
            if quiet.is_set():
                return
            try:
                mine = [*self._active, *self._recorder.waiting_ids()]
                await self._ledger.renew(self.name, mine, self._config.lease_seconds)
                reclaimed = await self._ledger.reclaim_expired()
                if reclaimed:
                    log.warning("took back %d deliveries whose worker stopped answering", reclaimed)
            except (OSError, JianbaoError) as error:
                log.warning("lease renewal failed (%s); retrying", error)
            except Exception as error:  # the database driver's own errors: keep the heartbeat alive
                log.warning("lease renewal failed (%s); retrying", type(error).__name__)

    async def _deliver(self, claim: Claim) -> None:
        try:
            result = await self._send(claim)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            result = self._where_it_got(claim, self._later(claim, 0, HANDED_BACK, 0.0))
        except ChannelDown as error:
            log.error(
                "%s: %s; pausing the channel for %.0f s", claim.channel, error.message, CHANNEL_DOWN_SECONDS
            )
            self._down_until[claim.channel] = time.monotonic() + CHANNEL_DOWN_SECONDS
            result = self._where_it_got(claim, self._later(claim, 0, error.message, CHANNEL_DOWN_SECONDS))
        except Exception as error:
            # A bug must not lose the delivery: it goes back with the usual backoff, and is logged.
            log.exception("delivery %d failed unexpectedly", claim.id)
            retry = self._retry(claim, 0, f"internal error: {type(error).__name__}", None)
            result = self._where_it_got(claim, retry)
        finally:
            self._reached_done(claim.id)
        if result.state == DeliveryState.SENT:
            self.sent += 1
        # The delivery keeps its place among the `concurrency` until its result is written.
        await self._recorder.write(result)

    def _reached_done(self, delivery_id: int) -> None:
        self._reached.pop(delivery_id, None)

    def _where_it_got(self, claim: Claim, result: Result) -> Result:
        part, message_id = self._reached.get(claim.id, (claim.parts_done, claim.message_id))
        return Result(
            result.id,
            result.state,
            part,
            message_id,
            error=result.error,
            uncertain=result.uncertain,
            retry_at=result.retry_at,
        )

    async def _send(self, claim: Claim, *, test: bool = False) -> Result:
        channel, sender = self._senders.open[claim.channel]
        # A mass send reaches every follower with one payload: it cannot carry anyone's topics.
        topics = () if claim.kind == DeliveryKind.MASS else claim.topics
        rendered = await self._payloads.get(claim.issue_date, claim.channel, topics)
        delivery = Delivery(
            id=claim.id,
            broadcast_id=claim.broadcast_id,
            issue_date=claim.issue_date,
            address=claim.address,
            mass=claim.kind == DeliveryKind.MASS,
            secret=claim.secret,
            parts_done=claim.parts_done,
            message_id=claim.message_id,
            unsubscribe_url=self._personal_url(claim) if channel.personal_links else None,
            preferences_url=(
                self._personal_url(claim, Purpose.PREFERENCES) if channel.personal_links else None
            ),
            reader=self._reader(claim) if channel.personal_links else None,
        )
        rate = self._rates.get(claim.channel, Unlimited())
        pace = _TestSendPace(rate) if test else _DeliveryPace(self, claim, rate)
        outcome = await channel.deliver(sender, rendered, delivery, pace)
        pushed = outcome.pushed
        if outcome.finished:
            uncertain = outcome.uncertain or pushed.status == PushStatus.UNCERTAIN
            return Result(
                claim.id,
                DeliveryState.SENT,
                outcome.parts_done,
                outcome.message_id,
                error=pushed.error,
                uncertain=uncertain,
            )
        if pushed.status == PushStatus.RETRY and pushed.retry_after and channel.throttles_account:
            # The platform throttles the account, not this recipient: every worker waits with us.
            await rate.hold(pushed.retry_after)
        return self._unsent(claim, pushed, outcome.parts_done, outcome.message_id, outcome.uncertain)

    async def record_progress(
        self, claim: Claim, parts_done: int, message_id: str | None, uncertain: bool
    ) -> None:
        """A part went out: remembered (an unexpected error puts it back) and recorded as SENDING before
        the delivery goes on."""
        self._reached[claim.id] = (parts_done, message_id)
        await self._recorder.write(
            Result(claim.id, DeliveryState.SENDING, parts_done, message_id, uncertain=uncertain)
        )

    def _reader(self, claim: Claim) -> str | None:
        readers = self._senders.readers
        if readers is None or not claim.subscriber_id:
            return None
        return readers.make(claim.subscriber_id)

    def _personal_url(self, claim: Claim, purpose: Purpose = Purpose.UNSUBSCRIBE) -> str | None:
        """The subscriber's signed link for `purpose`: one-click unsubscribe, or their preference page."""
        senders = self._senders
        if senders.tokens is None or not senders.public_url or claim.address is None:
            return None
        now = _utc_now()
        # The token's tag covers id, channel and address key: what the claim carries (the rest is unused).
        subscriber = Subscriber(
            id=claim.subscriber_id or 0,
            channel=claim.channel,
            address=claim.address,
            status=SubscriberStatus.ACTIVE,
            topics=(),
            created_at=now,
            confirmed_at=None,
            left_at=None,
            address_key=claim.address_key or claim.address,
        )
        token = senders.tokens.make(purpose, subscriber, now)
        # Both routes are /{purpose}/{token} (bot/subscriptions.py, bot/preferences.py).
        return f"{senders.public_url.rstrip('/')}/{purpose.value}/{token}"

    # --- outcomes -----------------------------------------------------------------------------------

    def _unsent(
        self, claim: Claim, pushed: PushResult, part: int, message_id: str | None, uncertain: bool
    ) -> Result:
        status = pushed.status
        if status == PushStatus.RETRY:
            result = self._retry(claim, part, pushed.error or "retry", pushed.retry_after)
            return Result(
                result.id,
                result.state,
                part,
                message_id,
                error=result.error,
                uncertain=uncertain,
                retry_at=result.retry_at,
            )
        state = DeliveryState.SKIPPED if status == PushStatus.SKIPPED else DeliveryState.FAILED
        effect = {PushStatus.BLOCKED: SubscriberStatus.BLOCKED, PushStatus.BOUNCED: SubscriberStatus.BOUNCED}
        return Result(
            claim.id,
            state,
            part,
            message_id,
            error=f"{status.value}: {pushed.error}" if pushed.error else status.value,
            uncertain=uncertain,
            subscriber_id=claim.subscriber_id,
            subscriber=effect.get(status),
        )

    def _retry(self, claim: Claim, part: int, error: str, retry_after: float | None) -> Result:
        # Throttling (retry_after) is not the delivery's fault: it does not use up its attempts.
        if retry_after is None and claim.attempts >= self._config.max_attempts:
            return Result(
                claim.id,
                DeliveryState.FAILED,
                part,
                claim.message_id,
                error=f"gave up after {claim.attempts} attempts: {error}",
            )
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(self._config.retry_seconds * 2 ** (claim.attempts - 1), MAX_RETRY_SECONDS)
            delay *= random.uniform(0.8, 1.2)  # noqa: S311  (jitter, not a secret) spread the retries of a burst of failures
        return self._later(claim, part, error, delay)

    def _later(self, claim: Claim, part: int, error: str, delay: float) -> Result:
        return Result(
            claim.id,
            DeliveryState.PENDING,
            part,
            claim.message_id,
            error=error,
            retry_at=_utc_now() + dt.timedelta(seconds=delay),
        )
