"""A stopped call's interrupt never lands in the work its pool thread does next."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from distributed.protocol.pickle import dumps

from caikit_dask.loading.actor.stoppable import StoppableCall
from caikit_dask.loading.wire.protocol import decode_outcome


class _Spinner:
    def spin(self, seconds: float) -> str:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass
        return "done"


def _other_work() -> str:
    """What the pool thread does next: must never see the earlier call's interrupt."""
    total = 0
    for step in range(20_000):
        total += step
    return "clean"


def test_stops_landing_as_calls_end_never_reach_the_next_work():
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    pool = ThreadPoolExecutor(max_workers=1)
    outcomes = {"done": 0, "canceled": 0}
    try:
        for attempt in range(300):
            seconds = 0.001 * (attempt % 10)
            call = StoppableCall(f"c{attempt}", dumps(("spin", (seconds,), {})), loop)
            ran = pool.submit(call.run, _Spinner())
            time.sleep(seconds * (attempt % 3) / 2)  # stops land before, during and after it
            call.stop(dequeued=False)
            ran.result(5)
            assert pool.submit(_other_work).result(5) == "clean"
            outcome = asyncio.run_coroutine_threadsafe(_outcome(call), loop).result(5)
            try:
                outcomes[decode_outcome(outcome)] += 1
            except RuntimeError as err:
                assert "canceled" in str(err)
                outcomes["canceled"] += 1
    finally:
        pool.shutdown()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()
    assert outcomes["canceled"] > 0  # some stops interrupted or preempted the call


async def _outcome(call: StoppableCall) -> bytes:
    return await call.outcome
