"""The rule engine's clock: wall time, timers and sleeping, real or simulated.

The engine never calls ``time.time()`` or ``asyncio.sleep`` itself; it asks a :class:`Clock`.
:class:`RealClock` follows the wall clock; :class:`SimulatedClock` only moves when told to,
so rule tests and the replay run deterministically and without real waiting.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "RealClock", "SimulatedClock", "TimerHandle", "load_zone"]

# A real timer never waits longer than this in one go: the loop's timers run on the
# monotonic clock, which does not count a suspend and ignores wall-clock corrections,
# so a long wait is re-checked against wall time at least this often.
_MAX_REAL_STEP = 60.0

# Settling the simulated loop: how many consecutive rounds with nothing ready count as
# idle (the extra rounds let the selector deliver I/O that is already waiting, such as a
# thread's call_soon_threadsafe), and how many rounds at most before we call it a busy loop.
_QUIET_ROUNDS = 3
_MAX_SETTLE_ROUNDS = 100_000
# Loops without a visible ready queue (uvloop) get this many plain yields instead.
_BLIND_ROUNDS = 50


def load_zone(name: str | zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    """Return the time zone named ``name``; ValueError with the name if it is unknown."""
    if isinstance(name, zoneinfo.ZoneInfo):
        return name
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: expected an IANA name like 'Europe/Amsterdam'"
        ) from exc


@runtime_checkable
class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled before it runs."""

    @property
    def when(self) -> float:
        """The epoch second the callback is due."""
        ...

    def cancel(self) -> None:
        """Stop the callback from running; harmless after it ran or was cancelled."""
        ...


class Clock(Protocol):
    """Wall time, timers and sleeping for the rule engine."""

    tz: zoneinfo.ZoneInfo

    def time(self) -> float:
        """Return the current time in epoch seconds."""
        ...

    def local_now(self) -> datetime:
        """Return the current time as an aware datetime in ``tz``."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` in the event loop at epoch second ``when`` (a past one: soon)."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once the clock has reached epoch second ``when``."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


async def _sleep_until(clock: Clock, when: float) -> None:
    """Sleep on a future that a timer of ``clock`` resolves; cancelling cancels the timer."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    handle = clock.call_at(when, wake)
    try:
        await waiter
    finally:
        handle.cancel()


# --- real time -------------------------------------------------------------------------


class _RealTimer:
    """A wall-clock timer that re-arms itself until wall time has truly reached ``when``."""

    __slots__ = ("_callback", "_handle", "_loop", "when")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[[], None]
    ) -> None:
        self._loop = loop
        self.when = when
        self._callback: Callable[[], None] | None = callback
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        remaining = self.when - time.time()
        self._handle = self._loop.call_later(min(max(0.0, remaining), _MAX_REAL_STEP), self._due)

    def _due(self) -> None:
        callback = self._callback
        if callback is None:
            return
        # The loop's monotonic timer may end before wall time reaches `when` (the wall
        # clock was set back, or the step was capped); never run early, or a caller that
        # computes "the next 07:00 after now" would get this same 07:00 again.
        if time.time() < self.when:
            self._arm()
            return
        self._callback = None
        self._handle = None
        callback()

    def cancel(self) -> None:
        """Stop the callback from running; harmless after it ran or was cancelled."""
        self._callback = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class RealClock(Clock):
    """The wall clock; timers run in the running event loop and stay accurate over days."""

    def __init__(self, tz: str | zoneinfo.ZoneInfo = "UTC") -> None:
        self.tz = load_zone(tz)

    def time(self) -> float:
        """Return the current time in epoch seconds."""
        return time.time()

    def local_now(self) -> datetime:
        """Return the current time as an aware datetime in ``tz``."""
        return datetime.now(self.tz)

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` in the running loop once wall time reaches ``when``, never before."""
        return _RealTimer(asyncio.get_running_loop(), when, callback)

    async def sleep_until(self, when: float) -> None:
        """Return once wall time has reached ``when``."""
        if when <= time.time():
            await asyncio.sleep(0)
            return
        await _sleep_until(self, when)

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of wall time have passed."""
        await self.sleep_until(time.time() + seconds)


# --- simulated time --------------------------------------------------------------------


class _SimTimer:
    """A timer on a :class:`SimulatedClock`."""

    __slots__ = ("_clock", "callback", "cancelled", "fired", "when")

    def __init__(self, clock: SimulatedClock, when: float, callback: Callable[[], None]) -> None:
        self._clock = clock
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        """Stop the callback from running; harmless after it ran or was cancelled."""
        if not self.cancelled and not self.fired:
            self.cancelled = True
            self._clock._forget_cancelled()


class SimulatedClock(Clock):
    """A clock that moves only when told to, firing due timers in order without waiting."""

    def __init__(self, start: float | datetime, tz: str | zoneinfo.ZoneInfo = "UTC") -> None:
        self.tz = load_zone(tz)
        if isinstance(start, datetime):
            # A naive start is a local wall time in `tz` (how rule tests write `clock:`).
            aware = start if start.tzinfo is not None else start.replace(tzinfo=self.tz)
            self._now = aware.timestamp()
        else:
            self._now = float(start)
        # Heap of (when, sequence, timer): the sequence keeps same-instant timers in the
        # order they were scheduled. Cancelled timers stay until popped.
        self._heap: list[tuple[float, int, _SimTimer]] = []
        self._sequence = itertools.count()
        self._active = 0
        self._advancing = False

    def time(self) -> float:
        """Return the simulated time in epoch seconds."""
        return self._now

    def local_now(self) -> datetime:
        """Return the simulated time as an aware datetime in ``tz``."""
        return datetime.fromtimestamp(self._now, self.tz)

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` when the clock reaches ``when`` (a past one: at the next settle)."""
        timer = _SimTimer(self, max(when, self._now), callback)
        heapq.heappush(self._heap, (timer.when, next(self._sequence), timer))
        self._active += 1
        return timer

    async def sleep_until(self, when: float) -> None:
        """Return once the simulated clock has reached ``when``."""
        if when <= self._now:
            await asyncio.sleep(0)
            return
        await _sleep_until(self, when)

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of simulated time have passed."""
        await self.sleep_until(self._now + seconds)

    def pending(self) -> int:
        """Return how many timers are scheduled and not yet fired or cancelled."""
        return self._active

    def next_due(self) -> float | None:
        """Return when the earliest scheduled timer is due, or None without timers."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing each due timer in order and settling."""
        if seconds < 0:
            raise ValueError(f"cannot move a simulated clock backwards ({seconds} s)")
        await self.advance_to(self._now + seconds)

    async def advance_to(self, when: float) -> None:
        """Move time forward to ``when``, firing each due timer in order and settling."""
        if when < self._now:
            raise ValueError(f"cannot move a simulated clock backwards, from {self._now} to {when}")
        if self._advancing:
            raise RuntimeError("the simulated clock is already being advanced by another task")
        self._advancing = True
        try:
            await self._settle()
            while True:
                due = self.next_due()
                if due is None or due > when:
                    break
                _, _, timer = heapq.heappop(self._heap)
                self._now = max(self._now, timer.when)
                self._fire(timer)
                # Let what the timer woke run to its next wait before the next timer,
                # so chained delays inside one advance happen in their true order.
                await self._settle()
            self._now = when
        finally:
            self._advancing = False

    async def run_until_idle(self) -> None:
        """Let ready tasks settle and fire timers already due, without moving time."""
        await self.advance_to(self._now)

    def _forget_cancelled(self) -> None:
        self._active -= 1
        # Cancelled timers wait in the heap until popped; rebuild it once they are most
        # of it, so a long replay that keeps cancelling (mode: restart) stays small.
        if len(self._heap) > 64 and len(self._heap) > 2 * self._active:
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)

    def _fire(self, timer: _SimTimer) -> None:
        timer.fired = True
        self._active -= 1
        try:
            timer.callback()
        except Exception as exc:
            # One failing timer must not stop the others: report it the way the event
            # loop reports a failing call_later callback.
            asyncio.get_running_loop().call_exception_handler(
                {"message": "Exception in a simulated clock timer callback", "exception": exc}
            )

    async def _settle(self) -> None:
        """Yield to the event loop until nothing else is ready to run."""
        loop = asyncio.get_running_loop()
        # asyncio's own loops keep their ready callbacks in `_ready` (not public API,
        # but stable since 3.4); without it we can only yield a fixed number of times.
        if not hasattr(loop, "_ready"):
            for _ in range(_BLIND_ROUNDS):
                await asyncio.sleep(0)
            return
        quiet = 0
        for _ in range(_MAX_SETTLE_ROUNDS):
            await asyncio.sleep(0)
            # Right after we resume, the ready queue holds every callback still to run
            # in this round plus all scheduled since: empty means everything is waiting.
            if loop._ready:
                quiet = 0
            else:
                quiet += 1
                if quiet >= _QUIET_ROUNDS:
                    return
        raise RuntimeError(
            f"the event loop never became idle within {_MAX_SETTLE_ROUNDS} rounds "
            "(a task keeps yielding without waiting on anything?)"
        )
