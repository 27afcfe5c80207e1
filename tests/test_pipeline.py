"""BatchPipeline: one batch stored on a worker while the caller goes on, in order, errors in the caller."""

from __future__ import annotations

import threading
import time

import pytest

from monitor.pipeline import BatchPipeline


class Recorder:
    """A store that logs when each batch starts and ends, and on which thread."""

    def __init__(self, fail_on: int | None = None, seconds: float = 0.0) -> None:
        self.events: list[tuple[str, int]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on
        self.seconds = seconds
        self._lock = threading.Lock()

    def __call__(self, batch: int) -> int:
        with self._lock:
            self.events.append(("start", batch))
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        if batch == self.fail_on:
            with self._lock:
                self.events.append(("failed", batch))
            raise RuntimeError(f"batch {batch} failed")
        with self._lock:
            self.events.append(("end", batch))
        return batch * 10


@pytest.mark.parametrize("threaded", [True, False])
def test_batches_are_stored_one_at_a_time_in_order_and_counted_in_the_callers_thread(threaded: bool) -> None:
    store = Recorder(seconds=0.01)
    counted: list[tuple[int, int]] = []
    caller = threading.get_ident()
    with BatchPipeline(store, threaded=threaded) as pipe:
        for n in range(5):
            pipe.submit(n, lambda result: counted.append((result, threading.get_ident())))
    assert [r for r, _ in counted] == [0, 10, 20, 30, 40]
    assert {t for _, t in counted} == {caller}
    assert store.events == [(kind, n) for n in range(5) for kind in ("start", "end")]  # never two at once
    assert (caller in store.threads) is not threaded


def test_the_caller_goes_on_while_a_batch_is_stored() -> None:
    release = threading.Event()
    started = threading.Event()

    def store(batch: int) -> int:
        started.set()
        assert release.wait(10)
        return batch

    with BatchPipeline(store) as pipe:
        pipe.submit(1, lambda _: None)
        assert started.wait(10)  # the store is running and blocked, yet submit returned
        release.set()


def test_a_failed_store_is_raised_in_the_caller_and_nothing_after_it_is_stored() -> None:
    store = Recorder(fail_on=1)
    counted: list[int] = []
    with pytest.raises(RuntimeError, match="batch 1 failed"), BatchPipeline(store) as pipe:
        for n in range(4):
            pipe.submit(n, counted.append)
    assert counted == [0]
    assert ("start", 2) not in store.events and ("start", 3) not in store.events


def test_leaving_on_the_callers_error_finishes_and_counts_the_batch_in_flight_and_leaves_no_thread() -> None:
    before = threading.active_count()
    store = Recorder(seconds=0.2)
    counted: list[int] = []
    with pytest.raises(KeyboardInterrupt), BatchPipeline(store) as pipe:
        pipe.submit(7, counted.append)
        raise KeyboardInterrupt  # e.g. Ctrl-C while the next batch is fetched
    assert store.events == [("start", 7), ("end", 7)]
    assert counted == [70]
    assert threading.active_count() == before


def test_the_stores_own_failure_wins_over_the_callers_error_and_keeps_it_as_context() -> None:
    store = Recorder(fail_on=0, seconds=0.05)
    with pytest.raises(RuntimeError, match="batch 0 failed") as caught, BatchPipeline(store) as pipe:
        pipe.submit(0, lambda _: None)
        raise ConnectionError("the next fetch failed")
    assert isinstance(caught.value.__context__, ConnectionError)


def test_no_thread_is_left_behind_after_a_clean_exit() -> None:
    before = threading.active_count()
    with BatchPipeline(Recorder()) as pipe:
        pipe.submit(1, lambda _: None)
    assert threading.active_count() == before
