"""What the fake group-robot webhooks (wecom_api.py, feishu_api.py) share, and what tests of the two robot
channels use beside them.

`RobotFake` is a loopback aiohttp server that plays one platform's robot webhook: it records every request
(`paths`, `received`), keeps the accepted bodies per robot (`accepted`, `accepted_at`) and the refusals
(`errors`), enforces the platform's per-robot rate in sliding windows over the accepted messages' arrival
times (`window_clock`, which a test may replace with a `VirtualClock`), and plays a FaultPlan's faults
(tests/fakes/faults.py; key: the robot's key or token). Each platform's fake says what a robot is, which
routes it serves, what it checks in a body, how it words an answer and which faults of its own it plays;
the faults both play the same way are here: "500" (HTTP 500, a non-JSON body; nothing stored), "drop" (the
connection closed with no answer; nothing stored) and "slow" (stored, then answered `slow_seconds` late:
a client that gives up sooner cannot tell whether it was delivered).

For the tests: `VirtualClock`, time that only its `sleep` moves (one clock for a pacer and a fake's rate
windows: a robot's minute passes without waiting a minute) and `unanswered_port`, a platform that never
answers a connection (tests/fakes/pace.py has the worker's side of a delivery for every channel's tests).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from aiohttp import web

from tests.fakes.faults import FaultPlan

SHARED_FAULTS = ("500", "drop", "slow")
MAX_REQUEST_BYTES = 1024**2  # far above either platform's body limit: the fakes refuse those themselves


class Refused(Exception):
    """A refusal in the platform's words: its code, its message and the HTTP status it comes with."""

    def __init__(self, code_msg: tuple[int, str], status: int = 200) -> None:
        super().__init__(code_msg[1])
        self.code, self.msg = code_msg
        self.status = status


@dataclass
class Robot:
    enabled: bool = True
    arrivals: deque[float] = field(default_factory=deque)  # accepted messages, oldest first


R = TypeVar("R", bound=Robot)
# A window: at most `count` messages in any `seconds`.
Window = tuple[int, float]


class RobotFake(Generic[R]):
    """One platform's robot webhook. `url` is its root, to be given to the sender as its API root."""

    FAULTS: ClassVar[tuple[str, ...]]  # SHARED_FAULTS and the platform's own

    def __init__(self) -> None:
        self.url = ""
        self.robots: dict[str, R] = {}
        self.window_clock: Callable[[], float] = time.monotonic  # the rate windows' clock
        self.received: list[tuple[str | None, Any]] = []
        self.accepted: dict[str, list[dict[str, Any]]] = {}
        self.accepted_at: dict[str, list[float]] = {}
        self.errors: list[tuple[str | None, int, str]] = []
        self.paths: list[str] = []  # every requested path with its query, hook or not
        self.throttled = 0  # refusals of the rate limit (not injected ones)
        self.injected: list[tuple[str, str | None]] = []  # (fault, key) of every fault a FaultPlan injected
        self._plan: FaultPlan | None = None
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # --- what the platform's fake says ----------------------------------------------------------------

    def windows(self) -> tuple[Window, ...]:
        """The per-robot rate now; () for none."""
        raise NotImplementedError

    def _routes(self, app: web.Application) -> None:
        """Add the hook's route, whose handler finds the robot's key and calls `_hook`."""
        raise NotImplementedError

    def _accept(self, key: str | None, raw: bytes) -> None:
        """Check one request as the platform does: store it (`_store`) or raise Refused."""
        raise NotImplementedError

    def _inject(self, fault: str, key: str | None) -> web.StreamResponse:
        """Play one of the platform's own faults."""
        raise NotImplementedError

    def _answer(self, refused: Refused | None) -> web.StreamResponse:
        """The platform's answer: success (None) or a refusal."""
        raise NotImplementedError

    def messages(self, key: str) -> list[dict[str, Any]]:
        """The accepted bodies for one robot, as the sender was given them."""
        return list(self.accepted.get(key, []))

    # --- what tests arrange and read ----------------------------------------------------------------

    def remove_robot(self, key: str) -> None:
        """The robot is removed from its group: its key is refused from now on."""
        self.robots.pop(key, None)

    def faults(self, plan: FaultPlan | None) -> None:
        """Inject the plan's faults into the hook from now on (None: no more faults)."""
        if plan is not None:
            plan.check(self.FAULTS)
        self._plan = plan

    def delivered(self) -> Counter[tuple[str, str]]:
        """Accepted messages by (key, canonical JSON): a count above 1 is a duplicate."""
        return Counter(
            (key, json.dumps(body, sort_keys=True, ensure_ascii=False))
            for key in self.accepted
            for body in self.messages(key)
        )

    def error_codes(self) -> list[int]:
        return [code for _, code, _ in self.errors]

    # --- serving ------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._record_path], client_max_size=MAX_REQUEST_BYTES)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()  # "slow" answers still pending go out now, not after the shutdown wait
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _record_path(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        response: web.StreamResponse = await handler(request)
        return response

    async def _hook(self, request: web.Request, key: str | None) -> web.StreamResponse:
        try:
            raw = await request.read()
        except ConnectionError:  # the sender died while sending: no one is left to answer
            return web.Response(status=400)
        self._arrived(raw)
        late_by = 0.0
        plan = self._plan
        fault = plan.draw(key) if plan is not None else None
        if plan is not None and fault is not None:
            self.injected.append((fault, key))
            if fault == "drop":
                if request.transport is not None:
                    request.transport.close()
                return web.Response()  # never written: the transport is closing
            if fault == "500":
                return web.Response(status=500, text="500 Internal Server Error")
            if fault != "slow":
                return self._inject(fault, key)
            late_by = plan.slow_seconds
        try:
            self._accept(key, raw)
        except Refused as refused:
            return self._refuse(key, refused)
        if late_by:
            await self._late(late_by)
        return self._answer(None)

    def _arrived(self, raw: bytes) -> None:
        """Every request body that reached the hook, before any check."""

    def _refuse(self, key: str | None, refused: Refused) -> web.StreamResponse:
        self.errors.append((key, refused.code, refused.msg))
        return self._answer(refused)

    def _over_limit(self, robot: R, now: float) -> bool:
        windows = self.windows()
        if not windows:
            return False
        arrivals = robot.arrivals
        longest = max(seconds for _, seconds in windows)
        while arrivals and arrivals[0] <= now - longest:
            arrivals.popleft()
        return any(
            sum(1 for arrival in arrivals if arrival > now - seconds) >= count for count, seconds in windows
        )

    def _store(self, key: str, robot: R, body: dict[str, Any], now: float) -> None:
        robot.arrivals.append(now)
        self.accepted.setdefault(key, []).append(body)
        self.accepted_at.setdefault(key, []).append(now)

    async def _late(self, seconds: float) -> None:
        """Wait before answering, but no longer than until the fake closes."""
        assert self._closing is not None
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass


F = TypeVar("F", bound=RobotFake[Any])


@asynccontextmanager
async def running(fake: F, port: int = 0) -> AsyncIterator[F]:
    await fake.start(port)
    try:
        yield fake
    finally:
        await fake.close()


# --- for the tests of the robot channels -------------------------------------------------------------


class VirtualClock:
    """Time that only `sleep` moves: give it to a pacer (clock and sleep) and to a fake (window_clock),
    and a robot's minute passes at once, with exact numbers."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port that never completes a connection: its accept queue is full, so the kernel drops
    further SYNs and connect() hangs until the client gives up (a connect timeout, nothing sent)."""
    server = socket.socket()
    fillers: list[socket.socket] = []
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with suppress(BlockingIOError):  # the handshake completes later, or never
                filler.connect(("127.0.0.1", port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()
