"""A per-process limit on model calls in flight, with a bounded wait.

Each gunicorn worker keeps at most ``MODEL_MAX_CONCURRENT_CALLS`` Predict
calls open to the model server. Up to ``MODEL_MAX_WAITING_CALLS`` more
requests wait for a slot, each for no longer than what is left of its
deadline, so the deadline covers the wait and the call together. A
request that finds the waiting line full is refused at once with 503 and
``Retry-After``; one whose deadline passes while it waits gets 504, as if
the model server itself had been slow.

Without the limit a slow model server would hold every thread of every
worker inside a call, and health checks and requests that never reach the
model would queue behind them. With gunicorn's threaded workers, keep
``threads`` above the sum of the two limits (``gateway/gunicorn.conf.py``
does) so that some threads always stay free for those requests.
"""

import contextlib
import threading
import time

from gateway.errors import ModelBusy, UpstreamTimeout


class CallLimiter:
    """Counts the model calls of one process and the requests waiting.

    Args:
        max_concurrent: calls allowed in flight at once; at least 1.
        max_waiting: requests allowed to wait for a slot; 0 refuses every
            request that finds all slots taken.
        retry_after_seconds: the ``Retry-After`` answered when the waiting
            line is full.

    Raises:
        ValueError: a limit is out of range.
    """

    def __init__(self, max_concurrent, max_waiting, retry_after_seconds):
        if max_concurrent < 1:
            raise ValueError(
                f"max_concurrent must be at least 1; received {max_concurrent}"
            )
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be 0 or more; received {max_waiting}")

        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.retry_after_seconds = retry_after_seconds
        self._condition = threading.Condition()
        self._active = 0
        self._waiting = 0

    @property
    def active(self):
        """Calls in flight right now."""
        return self._active

    @property
    def waiting(self):
        """Requests waiting for a slot right now."""
        return self._waiting

    @contextlib.contextmanager
    def slot(self, timeout):
        """Holds one call slot for the body of a ``with`` statement.

        Args:
            timeout: the most seconds to wait for a free slot.

        Yields:
            The seconds spent waiting, to subtract from the call's deadline.

        Raises:
            ModelBusy: ``max_waiting`` requests are already waiting.
            UpstreamTimeout: no slot was freed within ``timeout``.
        """
        started = time.monotonic()
        with self._condition:
            if self._active >= self.max_concurrent:
                self._wait_for_slot(timeout)
            self._active += 1

        try:
            yield time.monotonic() - started
        finally:
            with self._condition:
                self._active -= 1
                self._condition.notify()

    def _wait_for_slot(self, timeout):
        # Runs with the condition's lock held.
        if self._waiting >= self.max_waiting:
            raise ModelBusy(
                f"all {self.max_concurrent} model calls of this worker are in "
                f"flight and {self.max_waiting} requests already wait; "
                "try again shortly",
                headers={"Retry-After": str(self.retry_after_seconds)},
            )

        self._waiting += 1
        try:
            freed = self._condition.wait_for(
                lambda: self._active < self.max_concurrent, timeout
            )
        finally:
            self._waiting -= 1
        if not freed:
            raise UpstreamTimeout(
                f"the model server did not answer within {timeout:g} s "
                "(every model call of this worker stayed busy)"
            )
