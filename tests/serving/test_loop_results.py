"""LoopResults: worker-thread results reach the loop exactly, with one wake-up per burst."""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures

import pytest

from serving.model_server.loop_results import LoopResults


def test_a_burst_of_results_wakes_the_loop_once_and_each_waiter_gets_its_own() -> None:
    async def scenario() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal wakeups
            wakeups += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        results = LoopResults(loop)
        pending = [futures.Future() for _ in range(50)]
        waiters = [results.watch(f) for f in pending]

        def finish_all() -> None:  # one batch thread finishing its tasks
            for i, f in enumerate(pending):
                f.set_result(i * i)

        worker = threading.Thread(target=finish_all)
        worker.start()
        worker.join()  # the loop is blocked here, so the whole burst lands before the drain
        values = await asyncio.gather(*waiters)
        return values, wakeups

    values, wakeups = asyncio.run(scenario())
    assert values == [i * i for i in range(50)]
    assert wakeups == 1


def test_exceptions_and_cancellations_propagate() -> None:
    async def scenario() -> None:
        results = LoopResults(asyncio.get_running_loop())
        failing, cancelled, dropped = futures.Future(), futures.Future(), futures.Future()
        w_fail, w_cancel, w_drop = (results.watch(f) for f in (failing, cancelled, dropped))
        w_drop.cancel()  # the caller went away: its late result is dropped quietly
        threading.Thread(target=lambda: failing.set_exception(KeyError("boom"))).start()
        threading.Thread(target=cancelled.cancel).start()
        threading.Thread(target=lambda: dropped.set_result(1)).start()
        with pytest.raises(KeyError, match="boom"):
            await w_fail
        with pytest.raises(asyncio.CancelledError):
            await w_cancel
        await asyncio.sleep(0.05)
        assert w_drop.cancelled()

    asyncio.run(scenario())


def test_a_result_already_done_is_delivered() -> None:
    async def scenario() -> str:
        done: futures.Future[str] = futures.Future()
        done.set_result("ready")
        return await LoopResults(asyncio.get_running_loop()).watch(done)

    assert asyncio.run(scenario()) == "ready"
