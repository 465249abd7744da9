"""The rule engine's clocks: the real one keeps wall time, the simulated one keeps order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

import pytest

from hub.rules.clock import Clock, RealClock, SimulatedClock, TimerHandle

START = 1_767_614_400.0  # 2026-01-05T12:00:00Z, a Monday


# --- real clock ------------------------------------------------------------------------


async def test_real_clock_fires_call_at_within_a_few_ms() -> None:
    clock = RealClock("Europe/Amsterdam")
    fired = asyncio.get_running_loop().create_future()
    due = clock.time() + 0.05
    handle = clock.call_at(due, lambda: fired.set_result(time.time()))
    assert isinstance(handle, TimerHandle)
    assert handle.when == due
    at = await asyncio.wait_for(fired, 2)
    assert due <= at < due + 0.02


async def test_real_clock_never_fires_before_wall_time() -> None:
    clock = RealClock()
    times: list[float] = []
    due = clock.time() + 0.03
    clock.call_at(due, lambda: times.append(time.time()))
    await asyncio.sleep(0.1)
    assert len(times) == 1
    assert times[0] >= due


async def test_real_clock_past_time_runs_soon() -> None:
    clock = RealClock()
    fired = asyncio.Event()
    clock.call_at(clock.time() - 3600, fired.set)
    await asyncio.wait_for(fired.wait(), 0.5)


async def test_real_clock_cancel_stops_the_callback() -> None:
    clock = RealClock()
    calls: list[int] = []
    handle = clock.call_at(clock.time() + 0.02, lambda: calls.append(1))
    handle.cancel()
    handle.cancel()  # a second cancel is harmless
    await asyncio.sleep(0.06)
    assert calls == []


async def test_real_clock_sleep_and_sleep_until() -> None:
    clock = RealClock()
    begin = time.time()
    await clock.sleep(0.05)
    assert 0.05 <= time.time() - begin < 0.5
    target = clock.time() + 0.03
    await clock.sleep_until(target)
    assert time.time() >= target
    await clock.sleep(-1)  # a past time returns at once


async def test_real_clock_reports_local_time_in_its_zone() -> None:
    clock = RealClock("Europe/Amsterdam")
    now = clock.local_now()
    assert now.tzinfo == ZoneInfo("Europe/Amsterdam")
    assert abs(now.timestamp() - time.time()) < 1


async def test_real_clock_rearms_when_the_loop_timer_ends_early(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Simulate the wall clock being set back after the timer was armed: the loop's
    # monotonic timer ends on schedule but wall time has not reached `when` yet.
    clock = RealClock()
    fired: list[float] = []
    real_time = time.time
    due = real_time() + 0.02
    clock.call_at(due, lambda: fired.append(time.time()))
    monkeypatch.setattr(time, "time", lambda: real_time() - 0.1)
    await asyncio.sleep(0.06)
    assert fired == []  # the loop timer ended, but wall time says "not yet"
    monkeypatch.undo()
    await asyncio.sleep(0.15)
    assert len(fired) == 1
    assert fired[0] >= due


async def test_real_clock_cancelling_a_sleeper_cancels_its_timer() -> None:
    cancelled: list[float] = []

    class Recording:
        def __init__(self, inner: TimerHandle) -> None:
            self.inner = inner

        @property
        def when(self) -> float:
            return self.inner.when

        def cancel(self) -> None:
            cancelled.append(self.when)
            self.inner.cancel()

    class Spy(RealClock):
        def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
            return Recording(super().call_at(when, callback))

    clock = Spy()
    task = asyncio.create_task(clock.sleep(3600))
    await asyncio.sleep(0)
    assert cancelled == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(cancelled) == 1
    assert cancelled[0] > time.time() + 3500


def test_unknown_time_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        RealClock("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        SimulatedClock(START, "Mars/Olympus")


# --- simulated clock -------------------------------------------------------------------


def test_simulated_clock_is_a_clock() -> None:
    clock: Clock = SimulatedClock(START)
    assert clock.time() == START


def test_simulated_start_from_a_local_wall_time() -> None:
    clock = SimulatedClock(datetime(2026, 1, 5, 21, 0), "Europe/Amsterdam")
    assert clock.local_now() == datetime(2026, 1, 5, 21, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert clock.time() == datetime.fromisoformat("2026-01-05T20:00:00+00:00").timestamp()
    aware = SimulatedClock(datetime.fromisoformat("2026-01-05T12:00:00+00:00"), "Europe/Amsterdam")
    assert aware.time() == START
    assert aware.local_now().hour == 13


async def test_timers_fire_in_time_order_with_time_set_to_each() -> None:
    clock = SimulatedClock(START)
    seen: list[tuple[str, float]] = []
    for name, delay in (("c", 30.0), ("a", 10.0), ("b", 20.0)):
        clock.call_at(START + delay, partial(lambda n: seen.append((n, clock.time())), name))
    assert clock.pending() == 3
    await clock.advance(25)
    assert seen == [("a", START + 10), ("b", START + 20)]
    assert clock.time() == START + 25
    assert clock.pending() == 1
    await clock.advance(5)
    assert seen[-1] == ("c", START + 30)
    assert clock.pending() == 0


async def test_same_instant_timers_fire_in_scheduling_order() -> None:
    clock = SimulatedClock(START)
    seen: list[int] = []
    for index in range(20):
        clock.call_at(START + 5, partial(seen.append, index))
    await clock.advance(5)
    assert seen == list(range(20))


async def test_cancelled_timer_does_not_fire() -> None:
    clock = SimulatedClock(START)
    seen: list[str] = []
    keep = clock.call_at(START + 1, lambda: seen.append("keep"))
    drop = clock.call_at(START + 2, lambda: seen.append("drop"))
    drop.cancel()
    assert clock.pending() == 1
    await clock.advance(10)
    assert seen == ["keep"]
    keep.cancel()  # after firing: harmless, and the count stays right
    drop.cancel()
    assert clock.pending() == 0


async def test_timer_cancelled_by_an_earlier_timer_does_not_fire() -> None:
    clock = SimulatedClock(START)
    seen: list[str] = []
    later = clock.call_at(START + 2, lambda: seen.append("later"))
    clock.call_at(START + 1, later.cancel)
    await clock.advance(3)
    assert seen == []


async def test_past_timer_runs_at_the_next_settle_without_moving_time() -> None:
    clock = SimulatedClock(START)
    seen: list[float] = []
    handle = clock.call_at(START - 100, lambda: seen.append(clock.time()))
    assert handle.when == START
    await clock.run_until_idle()
    assert seen == [START]
    assert clock.time() == START


async def test_sleeping_tasks_wake_at_their_simulated_time() -> None:
    clock = SimulatedClock(START)
    woke: dict[str, float] = {}

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke[name] = clock.time()

    tasks = [
        asyncio.create_task(sleeper("long", 90)),
        asyncio.create_task(sleeper("short", 30)),
        asyncio.create_task(sleeper("until", 60)),
    ]
    await clock.run_until_idle()
    assert clock.pending() == 3
    await clock.advance(45)
    assert woke == {"short": START + 30}
    await clock.advance(45)
    assert woke == {"short": START + 30, "until": START + 60, "long": START + 90}
    assert all(task.done() for task in tasks)


async def test_sleep_until_an_absolute_time() -> None:
    clock = SimulatedClock(START)
    done: list[float] = []

    async def waiter() -> None:
        await clock.sleep_until(START + 3600)
        done.append(clock.time())

    asyncio.create_task(waiter())  # noqa: RUF006 - finishes within this test
    await clock.advance(3599)
    assert done == []
    await clock.advance(1)
    assert done == [START + 3600]


async def test_chained_sleeps_run_within_one_advance() -> None:
    clock = SimulatedClock(START)
    steps: list[float] = []

    async def twice() -> None:
        await clock.sleep(10)
        steps.append(clock.time())
        await clock.sleep(10)
        steps.append(clock.time())

    task = asyncio.create_task(twice())
    await clock.advance(15)
    assert steps == [START + 10]
    assert not task.done()
    await clock.advance(10)
    assert steps == [START + 10, START + 20]
    assert task.done()

    # From a fresh start, one advance of 25 s covers both sleeps.
    clock = SimulatedClock(START)
    steps.clear()
    task = asyncio.create_task(twice())
    await clock.advance(25)
    assert task.done()
    assert steps == [START + 10, START + 20]


async def test_actions_woken_by_a_timer_settle_before_the_next_timer() -> None:
    # A timer wakes a task that hands work through a queue to another task; the whole
    # chain must run before the next timer, at the time of the first.
    clock = SimulatedClock(START)
    log: list[tuple[str, float]] = []
    queue: asyncio.Queue[str] = asyncio.Queue()

    async def producer() -> None:
        await clock.sleep(5)
        for _ in range(3):
            await asyncio.sleep(0)
        await queue.put("work")

    async def consumer() -> None:
        item = await queue.get()
        await asyncio.sleep(0)
        log.append((item, clock.time()))

    tasks = [asyncio.create_task(producer()), asyncio.create_task(consumer())]
    await clock.run_until_idle()  # the producer's timer is now first in line for START + 5
    clock.call_at(START + 5, lambda: log.append(("second timer", clock.time())))
    clock.call_at(START + 6, lambda: log.append(("third timer", clock.time())))
    await clock.advance(10)
    assert log == [
        ("work", START + 5),
        ("second timer", START + 5),
        ("third timer", START + 6),
    ]
    assert all(task.done() for task in tasks)


async def test_run_until_idle_lets_tasks_progress_without_moving_time() -> None:
    clock = SimulatedClock(START)
    progress: list[int] = []

    async def chatty() -> None:
        for index in range(50):
            progress.append(index)
            await asyncio.sleep(0)
        await clock.sleep(1)
        progress.append(-1)

    task = asyncio.create_task(chatty())
    await clock.run_until_idle()
    assert progress == list(range(50))
    assert clock.time() == START
    assert clock.pending() == 1
    await clock.advance(1)
    assert task.done()


async def test_cancelling_a_sleeping_task_cancels_its_timer() -> None:
    clock = SimulatedClock(START)
    task = asyncio.create_task(clock.sleep(60))
    await clock.run_until_idle()
    assert clock.pending() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending() == 0
    assert clock.next_due() is None


async def test_failing_timer_does_not_stop_the_others() -> None:
    clock = SimulatedClock(START)
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
    seen: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    clock.call_at(START + 1, boom)
    clock.call_at(START + 2, lambda: seen.append("after"))
    try:
        await clock.advance(3)
    finally:
        loop.set_exception_handler(None)
    assert seen == ["after"]
    assert [str(exc) for exc in reported] == ["boom"]


async def test_a_simulated_day_of_timers_takes_no_real_time() -> None:
    clock = SimulatedClock(datetime(2026, 1, 5), "Europe/Amsterdam")
    ticks: list[float] = []

    async def every_minute() -> None:
        while True:
            await clock.sleep(60)
            ticks.append(clock.time())

    task = asyncio.create_task(every_minute())
    begin = time.perf_counter()
    await clock.advance(86_400)
    elapsed = time.perf_counter() - begin
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ticks) == 1440
    assert ticks[-1] == clock.time()
    assert clock.local_now() == datetime(2026, 1, 6, tzinfo=ZoneInfo("Europe/Amsterdam"))
    assert elapsed < 1.0


async def test_moving_backwards_is_refused() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance_to(START - 1)
    await clock.advance_to(START + 10)
    assert clock.time() == START + 10


async def test_concurrent_advance_is_refused() -> None:
    clock = SimulatedClock(START)
    errors: list[BaseException] = []

    async def meddle() -> None:
        try:
            await clock.advance(1)
        except RuntimeError as exc:
            errors.append(exc)

    tasks: list[asyncio.Task[None]] = []
    clock.call_at(START + 1, lambda: tasks.append(asyncio.create_task(meddle())))
    await clock.advance(2)
    assert tasks[0].done()
    assert len(errors) == 1
    assert "already being advanced" in str(errors[0])


async def test_a_busy_looping_task_is_reported() -> None:
    clock = SimulatedClock(START)

    async def spin() -> None:
        while True:  # noqa: ASYNC110 - the point is a task that never waits
            await asyncio.sleep(0)

    task = asyncio.create_task(spin())
    try:
        with pytest.raises(RuntimeError, match="never became idle"):
            await clock.run_until_idle()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_many_cancelled_timers_keep_order_and_count() -> None:
    clock = SimulatedClock(START)
    seen: list[int] = []
    handles = [clock.call_at(START + n, partial(seen.append, n)) for n in range(1000)]
    for n, handle in enumerate(handles):
        if n % 10:
            handle.cancel()
    assert clock.pending() == 100
    await clock.advance(1000)
    assert seen == list(range(0, 1000, 10))
    assert clock.pending() == 0
