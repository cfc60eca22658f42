"""graph.runtime.deadlines: time limits that behave as asyncio.timeout's, with shared timers."""

import asyncio
import gc
import time
import weakref

import pytest
import uvloop

from graph.runtime.deadlines import _LOOPS, RESOLUTION, TimeLimit, time_limit


def run(coroutine_function):
    return asyncio.run(coroutine_function())


def test_a_block_that_outlasts_its_limit_raises_timeout_error_soon_after():
    async def main():
        started = time.monotonic()
        with pytest.raises(TimeoutError) as raised, time_limit(0.05) as limit:
            await asyncio.sleep(10)
        assert limit.expired
        assert isinstance(raised.value.__cause__, asyncio.CancelledError)
        elapsed = time.monotonic() - started
        assert 0.05 <= elapsed < 0.05 + RESOLUTION + 0.5
        await asyncio.sleep(0.01)  # the task goes on, not cancelled any more
        assert asyncio.current_task().cancelling() == 0

    run(main)


def test_a_block_done_in_time_is_left_alone_after_it():
    async def main():
        with time_limit(0.02) as limit:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # past the limit's slot: nothing cancels the task
        assert not limit.expired
        assert asyncio.current_task().cancelling() == 0

    run(main)


def test_limits_in_one_slot_share_one_timer_and_each_fires():
    async def main():
        loop = asyncio.get_running_loop()
        timers = len(loop._scheduled)
        when = loop.time() + 0.05

        async def limited():
            with TimeLimit(when):
                await asyncio.sleep(10)

        tasks = [asyncio.create_task(limited()) for _ in range(50)]
        await asyncio.sleep(0)
        assert len(loop._scheduled) - timers <= 2 + 50  # the 50 sleeps, and at most two slots
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)

    run(main)


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def main():
        entered = asyncio.Event()

        async def limited():
            with time_limit(0.05):
                entered.set()
                try:
                    await asyncio.sleep(10)
                finally:
                    await asyncio.sleep(0.1)  # the limit fires too, while the task unwinds

        task = asyncio.create_task(limited())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main)


def test_nested_limits_the_inner_one_fires_the_outer_one_goes_on():
    async def main():
        with time_limit(5) as outer:
            with pytest.raises(TimeoutError), time_limit(0.02):
                await asyncio.sleep(10)
            await asyncio.sleep(0.01)
        assert not outer.expired

    run(main)


def test_a_limit_already_past_fires_at_the_next_turn():
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError), TimeLimit(loop.time() - 1):
            await asyncio.sleep(1)

    run(main)


def test_each_event_loop_has_its_own_timers_and_lets_go_of_them():
    def on(loop):
        async def main():
            with pytest.raises(TimeoutError), time_limit(0.01):
                await asyncio.sleep(1)

        loop.run_until_complete(main())
        loop.close()

    loops = [asyncio.new_event_loop(), uvloop.new_event_loop()]
    for loop in loops:
        on(loop)
    assert all(loop in _LOOPS for loop in loops)
    gone = [weakref.ref(loop) for loop in loops]
    del loop, loops
    gc.collect()
    assert [ref() for ref in gone] == [None, None]  # their timers did not keep them alive


def test_outside_a_task_a_limit_refuses():
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError):
            loop.run_until_complete(_enter_in_callback(loop))
    finally:
        loop.close()


async def _enter_in_callback(loop):
    future = loop.create_future()

    def callback():
        try:
            with time_limit(1):
                pass
        except RuntimeError as error:
            future.set_exception(error)
        else:
            future.set_result(None)

    loop.call_soon(callback)
    await future
