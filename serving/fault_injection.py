"""Faults the local model server can inject on request: a testing aid only.

TensorFlow Serving has no such switch, so nothing in production may depend
on it. The fault drills (``tests/test_fault_drills.py``) use it to play a
slow model server: ``python -m serving --inject_delay_ms 3000`` holds every
Predict call that long before running the model.
"""

import logging
import time

log = logging.getLogger(__name__)


class DelayedRunner:
    """Runs the model like ``runner``, after sleeping a fixed time.

    Args:
        runner: the runner that does the work, such as ``DirectRunner``.
        delay_seconds: how long each call sleeps first.

    Note:
        The sleep ignores the call's deadline, as a busy TensorFlow Serving
        does: the server finishes the work even when the client has gone.
    """

    def __init__(self, runner, delay_seconds):
        self.runner = runner
        self.delay_seconds = delay_seconds
        log.warning(
            "fault injection: every Predict call is delayed by %.0f ms",
            delay_seconds * 1000,
        )

    def run(self, version, signature_name, inputs, output_names, deadline_seconds):
        """Sleeps ``delay_seconds``, then runs the wrapped runner."""
        time.sleep(self.delay_seconds)

        return self.runner.run(
            version, signature_name, inputs, output_names, deadline_seconds
        )

    def stop(self):
        """Stops the wrapped runner."""
        self.runner.stop()
