"""The per-process limit on model calls: slots, the waiting line, refusals."""

import threading
import time

import pytest

from gateway.call_limit import CallLimiter
from gateway.errors import ModelBusy, UpstreamTimeout


def hold_slot(limiter, timeout=5.0):
    """Takes a slot on another thread; returns ``(release, thread)``."""
    taken = threading.Event()
    release = threading.Event()

    def run():
        with limiter.slot(timeout):
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert taken.wait(5)
    return release, thread


def test_free_slot_is_taken_at_once():
    limiter = CallLimiter(max_concurrent=2, max_waiting=0, retry_after_seconds=2)

    with limiter.slot(1.0) as waited:
        assert limiter.active == 1
        assert waited < 0.5

    assert limiter.active == 0


def test_full_line_is_refused_with_retry_after():
    limiter = CallLimiter(max_concurrent=1, max_waiting=0, retry_after_seconds=3)
    release, thread = hold_slot(limiter)

    with pytest.raises(ModelBusy) as raised, limiter.slot(1.0):
        pass

    assert raised.value.status == 503
    assert raised.value.headers == {"Retry-After": "3"}
    assert raised.value.detail == (
        "all 1 model calls of this worker are in flight and 0 requests "
        "already wait; try again shortly"
    )
    release.set()
    thread.join()
    assert (limiter.active, limiter.waiting) == (0, 0)


def test_waiting_request_gets_the_freed_slot():
    limiter = CallLimiter(max_concurrent=1, max_waiting=1, retry_after_seconds=2)
    release, thread = hold_slot(limiter)
    threading.Timer(0.3, release.set).start()

    with limiter.slot(5.0) as waited:
        assert limiter.active == 1
        assert waited >= 0.3

    thread.join()
    assert (limiter.active, limiter.waiting) == (0, 0)


def test_wait_past_the_timeout_is_504():
    limiter = CallLimiter(max_concurrent=1, max_waiting=1, retry_after_seconds=2)
    release, thread = hold_slot(limiter)

    with pytest.raises(UpstreamTimeout) as raised, limiter.slot(0.2):
        pass

    assert raised.value.status == 504
    assert raised.value.detail == (
        "the model server did not answer within 0.2 s "
        "(every model call of this worker stayed busy)"
    )
    assert limiter.waiting == 0
    release.set()
    thread.join()


def test_second_waiter_beyond_the_line_is_refused():
    limiter = CallLimiter(max_concurrent=1, max_waiting=1, retry_after_seconds=2)
    release, holder = hold_slot(limiter)
    waiter_done = threading.Event()

    def wait_in_line():
        with limiter.slot(5.0):
            waiter_done.set()

    waiter = threading.Thread(target=wait_in_line, daemon=True)
    waiter.start()
    for _ in range(100):
        if limiter.waiting == 1:
            break
        time.sleep(0.01)
    assert limiter.waiting == 1

    with pytest.raises(ModelBusy), limiter.slot(5.0):
        pass

    release.set()
    holder.join()
    waiter.join()
    assert waiter_done.is_set()
    assert (limiter.active, limiter.waiting) == (0, 0)


def test_slot_is_released_when_the_call_fails():
    limiter = CallLimiter(max_concurrent=1, max_waiting=0, retry_after_seconds=2)

    with pytest.raises(RuntimeError), limiter.slot(1.0):
        raise RuntimeError("the call failed")

    assert limiter.active == 0
    with limiter.slot(1.0):
        assert limiter.active == 1


@pytest.mark.parametrize(
    ("max_concurrent", "max_waiting", "message"),
    [
        (0, 4, "max_concurrent must be at least 1; received 0"),
        (2, -1, "max_waiting must be 0 or more; received -1"),
    ],
)
def test_limits_out_of_range_are_refused(max_concurrent, max_waiting, message):
    with pytest.raises(ValueError) as raised:
        CallLimiter(max_concurrent, max_waiting, retry_after_seconds=2)

    assert str(raised.value) == message
