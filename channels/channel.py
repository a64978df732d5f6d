"""The one interface every channel implements: what the rest of jianbao may ask of a channel.

Like listmonk's messengers (Name/Push/Flush/Close) and datasette's output renderers, a channel is an object
registered by name (channels/registry.py). Everything outside a channel's own package (the worker, the
command line, the admin API, /healthz, broadcast control) asks the registry and then the channel; no code
elsewhere compares a channel's name with a string.

A channel says:
- who it is: `name` (stored with every subscriber and delivery) and `label` (for people);
- its addresses: `check_address` (normalised, or BadInput naming the rule), `address_key` (what makes two
  spellings one subscriber), `check_secret` (a credential some addresses carry: a Feishu signing secret);
- its settings: `settings` is the pydantic model of its own fields, composed into the service's settings;
  `off_reason(settings)` says, in one wording, why it cannot send ("" when it can);
- its rendering, pure (no network, no database): `render(document, settings, max_messages=...)` gives a
  `Rendered`: the payload (`to_dict()` for `render --json`, `preview()` for people), the links in it (to be
  tracked before anything goes out) and its sizes against the platform's limits;
- its broadcast rules: `plan(options)` (per-subscriber rows, and/or one mass row such as WeChat's mass
  send), `window(now)` (only subscribers who wrote to us since a cutoff may be sent to now, such as
  WeChat's 48 h window: a cutoff, so that an audience of a million is counted in SQL, not walked;
  `skip_reason` is that rule for one subscriber);
- its sending: `open_sender(settings)` builds the sender (its connections, tokens, pools) and
  `deliver(sender, rendered, delivery, pace)` pushes one delivery: every part from where the delivery
  had got to, reporting each part through `await pace.reached(...)` before the next goes out, honouring
  its own rate rules (per chat, per robot) and the shared one through `pace.slot()`. A RETRY with
  retry_after holds the channel for every worker when `throttles_account` (the platform limits the whole
  account);
- its test send: `test_send(sender, rendered, address)` sends the whole issue to one address an editor
  names (their own chat, openid or mailbox), outside any broadcast: by default a one-off `deliver`; a
  channel whose broadcast is not a per-address delivery says how (WeChat: a draft, then mass/preview).

A channel's sender has one shape: push a payload to an address, get a `PushResult`; close.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, final

from pydantic import BaseModel

from channels.base import Payload, PushResult, PushStatus
from channels.document import IssueDocument
from channels.links import RewrittenLink
from content.errors import BadInput

S = TypeVar("S", bound=BaseModel)

# A test send's Delivery is in no broadcast and has no row in the ledger, whose ids start at 1.
TEST_SEND_ID = 0
# The unsubscribe link in a test send on a `personal_links` channel: no subscriber stands behind the
# address, so the link must unsubscribe no one. `.example` is reserved for examples and never resolves
# (RFC 2606, section 3: https://www.rfc-editor.org/rfc/rfc2606#section-3).
TEST_SEND_UNSUBSCRIBE_URL = "https://jianbao.example/unsubscribe/TEST-SEND"


@dataclass(frozen=True, slots=True)
class Rendered:
    """An issue rendered for one channel, once per broadcast and worker."""

    payload: Payload
    links: tuple[RewrittenLink, ...]
    parts: int  # pushes one delivery takes (messages); a mass send counts its own steps
    sizes: Mapping[str, object] = field(default_factory=dict)  # against the platform's limits, for dry runs

    def to_dict(self) -> dict[str, object]:
        return self.payload.to_dict()

    def preview(self) -> str:
        return self.payload.preview()


@dataclass(frozen=True, slots=True)
class Plan:
    """Which delivery rows a broadcast on this channel gets."""

    direct: bool = True  # one row per subscriber
    mass: bool = False  # one row for the whole audience (the platform sends to all followers itself)


@dataclass(frozen=True, slots=True)
class Window:
    """A channel that may send now only to subscribers seen (who last wrote to us) at or after `since`;
    the others are skipped with `reason`. `admits` is the whole rule, so that storage can count it in SQL
    as `last_seen_at >= since` (BroadcastStore.count_audience) and decide it per subscriber with `admits`
    (BroadcastStore.start), and the two agree."""

    since: dt.datetime
    reason: str

    def admits(self, last_seen_at: dt.datetime | None) -> bool:
        return last_seen_at is not None and last_seen_at >= self.since


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery as a channel sees it: where to send, and how far an earlier attempt got."""

    id: int
    broadcast_id: int
    issue_date: dt.date
    address: str | None  # None for a mass delivery
    mass: bool = False
    secret: str | None = None  # the credential stored with the address (Feishu's signing secret)
    parts_done: int = 0
    message_id: str | None = None  # what earlier parts returned (ids joined by ","; a draft's media_id)
    unsubscribe_url: str | None = None  # their signed one-click link (for `personal_links` channels)
    reader: str | None = None  # their signed reader id for tracked links (per-reader clicks), if any
    preferences_url: str | None = None  # their signed preference page (topics, pause), if any


@dataclass(frozen=True, slots=True)
class Outcome:
    """How far a delivery got. `pushed` is the last push's result: SENT or UNCERTAIN when every part went
    out, otherwise why it stopped (RETRY with retry_after, FAILED, BLOCKED, BOUNCED, SKIPPED)."""

    pushed: PushResult
    parts_done: int
    message_id: str | None = None
    uncertain: bool = False  # some part got no answer in time: it may have arrived; never resent

    @property
    def finished(self) -> bool:
        return self.pushed.status in (PushStatus.SENT, PushStatus.UNCERTAIN)


class Pace(Protocol):
    """What the worker hands a delivery: the channel's shared rate, and where progress is recorded."""

    async def slot(self) -> None:
        """Wait for one slot of the channel's shared rate (over every worker)."""

    async def reached(self, parts_done: int, message_id: str | None, *, uncertain: bool = False) -> None:
        """Record that `parts_done` parts went out; returns once it is recorded, and only then may the
        next part be sent (a worker killed in between repeats at most the part in flight)."""


class _NoPace:
    """A test send's side of the Pace protocol: no shared rate (one editor's one-off; the channel's own
    per-recipient rules still apply inside `deliver`), and progress recorded nowhere: there is no ledger
    row to record it in."""

    async def slot(self) -> None:
        return None

    async def reached(self, parts_done: int, message_id: str | None, *, uncertain: bool = False) -> None:
        return None


class Sender(Protocol):
    async def close(self) -> None: ...


class Channel(ABC, Generic[S]):
    """One channel. Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    label: ClassVar[str]
    settings: ClassVar[type[BaseModel]]  # the channel's own settings (fields JIANBAO_<NAME>_...)
    # Whether `render(..., max_messages=N)` means anything (the channel sends several messages).
    fits_messages: ClassVar[bool] = False
    # Whether a delivery needs the subscriber's own unsubscribe link (Delivery.unsubscribe_url).
    personal_links: ClassVar[bool] = False
    # Whether a retry_after from the platform throttles the whole account (hold every worker) or only the
    # one recipient (a group robot's own limit), which the channel's sender paces itself.
    throttles_account: ClassVar[bool] = True

    # --- addresses ----------------------------------------------------------------------------------

    @abstractmethod
    def check_address(self, address: str) -> str:
        """The address to store for what a person typed, or BadInput naming the rule it breaks."""

    def address_key(self, address: str) -> str:
        """What makes two spellings of an address the same subscriber (exact by default)."""
        return address

    def check_secret(self, secret: str | None) -> str | None:
        """The credential stored with an address; most channels take none."""
        if secret:
            raise BadInput(f"a {self.label} address takes no secret")
        return None

    # --- settings -----------------------------------------------------------------------------------

    @abstractmethod
    def off_reason(self, settings: S) -> str:
        """Why this channel cannot send broadcasts with these settings, in one line; "" when it can."""

    def rate(self, settings: S) -> float:
        """Pushes per second over all workers for the whole account; 0 for no shared limit."""
        return 0.0

    # --- rendering (pure) ---------------------------------------------------------------------------

    @abstractmethod
    def render(self, document: IssueDocument, settings: S, *, max_messages: int | None = None) -> Rendered:
        """The issue as this channel sends it; DoesNotFit when it cannot be made to fit."""

    # --- broadcasts ---------------------------------------------------------------------------------

    def plan(self, options: Mapping[str, Any]) -> Plan:
        return Plan()

    def window(self, now: dt.datetime) -> Window | None:
        """Whom this channel may send to at `now`, by when they last wrote to us; None: everyone."""
        return None

    @final
    def skip_reason(self, *, last_seen_at: dt.datetime | None, now: dt.datetime) -> str | None:
        """Why a subscriber must not be sent to now (they are skipped at once); None to send. Final: a
        channel states its rule as `window`, which SQL can count; a rule of another shape could not be."""
        window = self.window(now)
        return None if window is None or window.admits(last_seen_at) else window.reason

    # --- sending ------------------------------------------------------------------------------------

    @abstractmethod
    async def open_sender(self, settings: S) -> Sender:
        """The sender, ready to push (a login or token check may raise ChannelDown)."""

    @abstractmethod
    async def deliver(self, sender: Any, rendered: Rendered, delivery: Delivery, pace: Pace) -> Outcome:
        """Push what is left of one delivery (from `delivery.parts_done`)."""

    async def test_send(self, sender: Any, rendered: Rendered, address: str) -> Outcome:
        """Send the whole rendered issue to `address` now, so that an editor sees it as readers will.

        A test send never touches the ledger: no delivery row, no subscriber row behind the address, no
        progress recorded, so a broadcast's counts and a subscriber's status stay as they were, and
        the returned Outcome is its only record. It goes from the first part to the last, never continued;
        on a `personal_links` channel it carries a link that unsubscribes no one. BadInput (one line, the
        channel's address rule) for an address this channel refuses, before anything goes out."""
        address = self.check_address(address)
        delivery = Delivery(
            id=TEST_SEND_ID,
            broadcast_id=TEST_SEND_ID,
            issue_date=_issue_date(rendered),
            address=address,
            parts_done=0,
            unsubscribe_url=TEST_SEND_UNSUBSCRIBE_URL if self.personal_links else None,
        )
        return await self.deliver(sender, rendered, delivery, _NoPace())


def _issue_date(rendered: Rendered) -> dt.date:
    """The rendered issue's date where the payload keeps its document; today's where it does not (a
    channel may put the date into what it sends, as WeChat's clientmsgid does)."""
    document = getattr(rendered.payload, "document", None)
    return document.date if isinstance(document, IssueDocument) else dt.date.today()


def needs_public_url(what: str) -> str:
    """The one wording of a missing JIANBAO_PUBLIC_URL, for every channel and feature that needs it."""
    return f"JIANBAO_PUBLIC_URL is not set (needed for {what})"
