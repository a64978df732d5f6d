"""The broadcast worker: claim due deliveries, send each on its channel, record what happened.

Per delivery (a task; `concurrency` at once):
- Telegram: the issue's messages in order, from the part the delivery had reached, each after a slot of
  the shared rate (30/s over all workers) and at least `chat_interval` after the previous message to
  the same chat (1/s per chat). Progress is recorded after every part, so a worker that dies mid-issue
  is continued, not restarted, by the next one.
- Email: the issue's template with the subscriber's address and signed unsubscribe link substituted
  (no rendering per subscriber), through a pool of SMTP connections at the shared email rate.
- WeChat: the MASS delivery adds the article as a draft (its media_id is recorded as progress, so a
  retry reuses it) and mass-sends it with a clientmsgid fixed per broadcast, so a resend after a crash
  is answered 45065 ("already sent") instead of reaching followers twice. DIRECT deliveries are
  customer-service texts.

Outcomes: sent (maybe with `uncertain`: a timeout left it open, and it is never resent), retried with
exponential backoff (or the platform's retry_after, which also holds the shared rate so every worker
pauses), failed (content refused, blocked, bounced, out of attempts) or skipped. A blocked chat makes
its subscriber BLOCKED; hard bounces are counted and make the subscriber BOUNCED at the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.broadcast.payloads import PayloadCache
from bot.broadcast.recorder import Recorder
from bot.tokens import Purpose, SubscriberTokens
from channels.base import PushResult, PushStatus
from channels.mailer import SmtpPool
from channels.telegram.transport import ChannelDown, TelegramSender
from channels.wechat_api import CredentialError, WeChatApi, WeChatApiError, WeChatUnreachable
from content.errors import JianbaoError
from storage.broadcasts import BroadcastStore, DeliveryKind, DeliveryState
from storage.deliveries import Claim, DeliveryLedger, Result
from storage.ratelimit import Rate, Unlimited
from storage.subscribers import Subscriber, SubscriberStatus

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 3600.0
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
    chat_interval: float = 1.0


@dataclass
class Senders:
    telegram: TelegramSender | None = None
    email: SmtpPool | None = None
    wechat: WeChatApi | None = None
    wechat_thumb_media_id: str = ""
    # Email needs both to build each subscriber's unsubscribe link.
    tokens: SubscriberTokens | None = None
    public_url: str = ""

    @property
    def channels(self) -> tuple[str, ...]:
        named = {"telegram": self.telegram, "email": self.email, "wechat": self.wechat}
        return tuple(name for name, sender in named.items() if sender is not None)


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
        self.sent = 0  # deliveries this worker finished as sent (for logs and benchmarks)

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Work until `stop` is set (or, with `until_idle`, until no running broadcast has anything left),
        then finish the deliveries in hand and write their results."""
        recorder = asyncio.create_task(self._recorder.run())
        heartbeat = asyncio.create_task(self._heartbeat())
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
                if not self._active and not claims:
                    await self._recorder.flush()
                    if await self._finish_broadcasts() and until_idle:
                        return
                waiting: set[asyncio.Future[Any]] = {*self._active.values(), stopping}
                await asyncio.wait(waiting, timeout=config.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if self._active:
                await asyncio.gather(*self._active.values(), return_exceptions=True)
            heartbeat.cancel()
            recorder.cancel()
            for task in (heartbeat, recorder, stopping):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._recorder.close()

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
        )
        if channel not in self._senders.channels:
            raise ChannelDown(f"{channel} is not configured for sending")
        return await self._send(claim)

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._deliver(claim))
        self._active[claim.id] = task
        task.add_done_callback(lambda _: self._active.pop(claim.id, None))

    def _open_channels(self) -> list[str]:
        now = time.monotonic()
        return [name for name in self._senders.channels if self._down_until.get(name, 0.0) <= now]

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

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._config.lease_seconds / 3)
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
        self._recorder.add(result)

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

    async def _send(self, claim: Claim) -> Result:
        if claim.channel == "telegram":
            return await self._telegram(claim)
        if claim.channel == "email":
            return await self._email(claim)
        if claim.kind == DeliveryKind.MASS:
            return await self._wechat_mass(claim)
        return await self._wechat_text(claim)

    # --- channels -----------------------------------------------------------------------------------

    async def _telegram(self, claim: Claim) -> Result:
        sender = self._senders.telegram
        assert sender is not None
        assert claim.address is not None
        messages = (await self._payloads.telegram(claim.issue_date)).messages
        rate = self._rates.get("telegram", Unlimited())
        part = claim.parts_done
        ids = claim.message_id.split(",") if claim.message_id else []
        uncertain = False
        last = 0.0
        while part < len(messages):
            if last:
                gap = last + self._config.chat_interval - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
            await rate.acquire()
            pushed = await sender.push(claim.address, messages[part])
            last = time.monotonic()
            if pushed.status not in (PushStatus.SENT, PushStatus.UNCERTAIN):
                return await self._unsent(claim, pushed, part, ",".join(ids) or None, uncertain)
            part += 1
            ids.append(pushed.message_id or "?")
            uncertain = uncertain or pushed.status == PushStatus.UNCERTAIN
            self._reached[claim.id] = (part, ",".join(ids))
            if part < len(messages):
                self._recorder.add(
                    Result(claim.id, DeliveryState.SENDING, part, ",".join(ids), uncertain=uncertain)
                )
        return Result(
            claim.id,
            DeliveryState.SENT,
            part,
            ",".join(ids) or None,
            error="a part may not have arrived (timeout)" if uncertain else None,
            uncertain=uncertain,
        )

    async def _email(self, claim: Claim) -> Result:
        senders = self._senders
        assert senders.email is not None
        assert senders.tokens is not None
        assert claim.address is not None
        template = await self._payloads.email(claim.issue_date)
        assert claim.subscriber_id is not None
        now = _utc_now()
        # The token's tag covers id, channel and address: what the claim carries (the rest is unused).
        subscriber = Subscriber(
            id=claim.subscriber_id,
            channel="email",
            address=claim.address,
            status=SubscriberStatus.ACTIVE,
            topics=(),
            created_at=now,
            confirmed_at=None,
            left_at=None,
        )
        token = senders.tokens.make(Purpose.UNSUBSCRIBE, subscriber, now)
        try:
            message = template.personalize(
                to=claim.address, unsubscribe_url=f"{senders.public_url.rstrip('/')}/unsubscribe/{token}"
            )
        except ValueError as error:
            return Result(claim.id, DeliveryState.FAILED, 0, error=f"cannot address the mail: {error}")
        await self._rates.get("email", Unlimited()).acquire()
        pushed = await senders.email.push(message)
        if pushed.status in (PushStatus.SENT, PushStatus.UNCERTAIN):
            uncertain = pushed.status == PushStatus.UNCERTAIN
            return Result(
                claim.id, DeliveryState.SENT, 1, pushed.message_id, error=pushed.error, uncertain=uncertain
            )
        return await self._unsent(claim, pushed, 0, None, False)

    async def _wechat_mass(self, claim: Claim) -> Result:
        api = self._senders.wechat
        assert api is not None
        if not self._senders.wechat_thumb_media_id:
            return Result(
                claim.id,
                DeliveryState.FAILED,
                0,
                error="JIANBAO_WECHAT_THUMB_MEDIA_ID is not set (the cover)",
            )
        media_id = claim.message_id if claim.parts_done >= 1 else None
        try:
            if media_id is None:
                payload = await self._payloads.wechat(claim.issue_date)
                article = payload.article.to_dict() | {"thumb_media_id": self._senders.wechat_thumb_media_id}
                media_id = await api.add_draft(article)
                self._reached[claim.id] = (1, media_id)
                self._recorder.add(Result(claim.id, DeliveryState.SENDING, 1, media_id))
            pushed = await api.mass_send(media_id, f"jianbao-{claim.issue_date}-{claim.broadcast_id}")
        except CredentialError as error:
            raise ChannelDown(f"wechat: {error.message}") from None
        except WeChatUnreachable as error:
            pushed = PushResult(PushStatus.RETRY, error=error.message)
        except WeChatApiError as error:
            pushed = PushResult(PushStatus.FAILED, error=error.message)
        parts = 1 if media_id else 0
        if pushed.status == PushStatus.SENT:
            message_id = f"{media_id} {pushed.message_id}" if pushed.message_id else media_id
            return Result(claim.id, DeliveryState.SENT, 2, message_id, error=pushed.error)
        return await self._unsent(claim, pushed, parts, media_id, False)

    async def _wechat_text(self, claim: Claim) -> Result:
        api = self._senders.wechat
        assert api is not None
        assert claim.address is not None
        payload = await self._payloads.wechat(claim.issue_date)
        await self._rates.get("wechat", Unlimited()).acquire()
        try:
            pushed = await api.push_text(claim.address, payload.text)
        except CredentialError as error:
            raise ChannelDown(f"wechat: {error.message}") from None
        if pushed.status in (PushStatus.SENT, PushStatus.UNCERTAIN):
            uncertain = pushed.status == PushStatus.UNCERTAIN
            return Result(claim.id, DeliveryState.SENT, 1, error=pushed.error, uncertain=uncertain)
        return await self._unsent(claim, pushed, 0, None, False)

    # --- outcomes -----------------------------------------------------------------------------------

    async def _unsent(
        self, claim: Claim, pushed: PushResult, part: int, message_id: str | None, uncertain: bool
    ) -> Result:
        status = pushed.status
        if status == PushStatus.RETRY:
            if pushed.retry_after:
                # The platform throttles the account, not this chat: every worker waits with us.
                await self._rates.get(claim.channel, Unlimited()).hold(pushed.retry_after)
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
