"""Batches concurrent Predict calls the way TensorFlow Serving does.

``tensorflow_model_server --enable_batching`` queues calls to the same
signature and runs them as one batch: the inputs are concatenated along
their first dimension, the model runs once, and each caller gets its own
rows of the outputs back. The ``BatchingParameters`` of
``--batching_parameters_file`` shape it, and the local server reads the
same file:

* ``max_batch_size``: most examples (rows, not calls) in one batch; a
  single call larger than that is refused with ``INVALID_ARGUMENT``;
* ``batch_timeout_micros``: how long a batch that is not full waits for
  more calls after its first one;
* ``num_batch_threads``: batches run at once;
* ``max_enqueued_batches``: batches waiting per queue; a call that would
  need one more is refused with ``UNAVAILABLE``, as TF Serving does;
* ``allowed_batch_sizes``: a batch is padded (with copies of its first
  row) up to the next allowed size, so the model sees few shapes; the
  padding rows are dropped from the answers.

There is one queue per model version, signature and input shape (past the
first dimension). A call whose deadline passes while it waits in a queue
is dropped before the model runs and answered ``DEADLINE_EXCEEDED``.

Each batch run is logged on the ``serving.batching`` logger as one INFO
line starting with ``batch:``, and counted in ``Batcher.invocations``.

Note:
    When a batch fails (say, one call's image cannot be decoded), this
    batcher runs each of its calls again on its own, so only the faulty
    call fails. TensorFlow Serving fails every call of the batch instead;
    clients must not rely on the difference.
"""

import collections
import dataclasses
import logging
import os
import threading
import time

import numpy as np

from serving.config import ConfigError
from serving.errors import DeadlineExceeded, InvalidArgument, QueueFull, ServingError

log = logging.getLogger(__name__)

# TensorFlow Serving's defaults for fields a batching.config leaves out.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """The batching parameters in force, checked."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_seconds: float = DEFAULT_BATCH_TIMEOUT_MICROS / 1e6
    num_batch_threads: int = os.cpu_count() or 1
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    allowed_batch_sizes: tuple = ()

    def __post_init__(self):
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be at least 1; received {getattr(self, name)}"
                )
        if self.batch_timeout_seconds < 0:
            raise ConfigError("batch_timeout_micros must not be negative")

        sizes = list(self.allowed_batch_sizes)
        if sizes:
            if sizes != sorted(set(sizes)) or sizes[0] < 1:
                raise ConfigError(
                    f"allowed_batch_sizes must be positive and increasing; "
                    f"received {sizes}"
                )
            if sizes[-1] != self.max_batch_size:
                raise ConfigError(
                    f"the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                    f"max_batch_size ({self.max_batch_size})"
                )

    @classmethod
    def from_parameters(cls, parameters):
        """Reads a ``BatchingParameters`` message, with TF Serving's defaults.

        Args:
            parameters: the message, as ``serving.config.read_batching_config``
                returns it.

        Returns:
            The ``BatchingOptions``.

        Raises:
            ConfigError: a value is out of range, or ``allowed_batch_sizes``
                is not increasing or does not end at ``max_batch_size``.
        """
        options = {}
        if parameters.HasField("max_batch_size"):
            options["max_batch_size"] = parameters.max_batch_size.value
        if parameters.HasField("batch_timeout_micros"):
            options["batch_timeout_seconds"] = (
                parameters.batch_timeout_micros.value / 1e6
            )
        if parameters.HasField("num_batch_threads"):
            options["num_batch_threads"] = parameters.num_batch_threads.value
        if parameters.HasField("max_enqueued_batches"):
            options["max_enqueued_batches"] = parameters.max_enqueued_batches.value
        options["allowed_batch_sizes"] = tuple(parameters.allowed_batch_sizes)

        return cls(**options)

    def padded_size(self, size):
        """Returns the allowed batch size a batch of ``size`` rows runs at."""
        for allowed in self.allowed_batch_sizes:
            if allowed >= size:
                return allowed

        return size


# The life of a call in a queue.
_QUEUED = "queued"
_RUNNING = "running"
_DROPPED = "dropped"


class _Task:
    """One call waiting for its batch."""

    def __init__(self, inputs, size, output_names, deadline):
        self.inputs = inputs
        self.size = size
        self.output_names = output_names
        self.deadline = deadline
        self.state = _QUEUED
        self.done = threading.Event()
        self.outputs = None
        self.error = None

    def finish(self, outputs=None, error=None):
        self.outputs = outputs
        self.error = error
        self.done.set()


class _Batch:
    """Calls that will run together, oldest first."""

    def __init__(self, version, signature_name, opened):
        self.version = version
        self.signature_name = signature_name
        self.opened = opened
        self.tasks = []
        self.size = 0
        self.closed = False


class Batcher:
    """Runs Predict calls in batches; a drop-in for ``DirectRunner``."""

    def __init__(self, options, clock=time.monotonic):
        self.options = options
        self.invocations = 0
        """Model runs so far (batches, and calls run again on their own)."""
        self._clock = clock
        self._condition = threading.Condition()
        self._queues = {}
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{index}", daemon=True)
            for index in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, version, signature_name, inputs, output_names, deadline_seconds):
        """Queues one call and waits for its rows of the batch's outputs.

        Args:
            version: the model version (``serving.model_store.ModelVersion``
                or anything with ``run(signature_name, inputs)``).
            signature_name: the signature to run.
            inputs: ``{input key: NumPy array}``, all with the same first
                dimension, the call's batch size.
            output_names: the outputs the caller wants.
            deadline_seconds: time left to the call's deadline; ``None``
                for no deadline.

        Returns:
            ``{output name: NumPy array}``, the call's own rows.

        Raises:
            InvalidArgument: the inputs cannot be batched, or hold more
                rows than ``max_batch_size``.
            QueueFull: ``max_enqueued_batches`` are waiting already.
            DeadlineExceeded: the deadline passed before the answer.
        """
        size = _batch_size(inputs)
        if size > self.options.max_batch_size:
            raise InvalidArgument(
                f"Task size {size} is larger than maximum input batch size "
                f"{self.options.max_batch_size}"
            )
        if size == 0:
            return _select(version.run(signature_name, inputs), output_names)

        deadline = None
        if deadline_seconds is not None:
            deadline = self._clock() + deadline_seconds
        task = _Task(inputs, size, output_names, deadline)
        key = (id(version), signature_name, _shape_key(inputs))
        with self._condition:
            self._enqueue(key, version, signature_name, task)
            self._condition.notify_all()

        if not task.done.wait(deadline_seconds):
            with self._condition:
                if task.state == _QUEUED:
                    task.state = _DROPPED
                    log.info(
                        "dropped a call of %d rows: deadline passed in queue", size
                    )
            raise DeadlineExceeded("Deadline exceeded while waiting for a batch")
        if task.error is not None:
            raise task.error

        return task.outputs

    def queued_batches(self):
        """Returns how many batches wait in the queues (not those running)."""
        with self._condition:
            return sum(len(queue) for queue in self._queues.values())

    def stop(self):
        """Ends the batch threads once the queued batches have run."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join()

    def _enqueue(self, key, version, signature_name, task):
        queue = self._queues.setdefault(key, collections.deque())
        last = queue[-1] if queue else None
        if last is not None and not last.closed:
            if last.size + task.size <= self.options.max_batch_size:
                self._add(last, task)
                return
            last.closed = True

        if len(queue) >= self.options.max_enqueued_batches:
            raise QueueFull(
                "The batch scheduling queue to which this task was submitted is full"
            )
        batch = _Batch(version, signature_name, self._clock())
        queue.append(batch)
        self._add(batch, task)

    def _add(self, batch, task):
        batch.tasks.append(task)
        batch.size += task.size
        if batch.size >= self.options.max_batch_size:
            batch.closed = True

    def _work(self):
        while True:
            with self._condition:
                batch = self._take_ready_batch()
                while batch is None:
                    if self._stopping and not self._queues:
                        return
                    self._condition.wait(self._seconds_to_next_timeout())
                    batch = self._take_ready_batch()
                tasks = self._claim(batch)

            if tasks:
                self._run_batch(batch, tasks)

    def _take_ready_batch(self):
        """Removes and returns the oldest batch that may run, or None."""
        now = self._clock()
        ready = None
        for key, queue in self._queues.items():
            head = queue[0]
            timed_out = now >= head.opened + self.options.batch_timeout_seconds
            if (head.closed or timed_out or self._stopping) and (
                ready is None or head.opened < ready[1].opened
            ):
                ready = (key, head)
        if ready is None:
            return None

        key, batch = ready
        self._queues[key].popleft()
        if not self._queues[key]:
            del self._queues[key]

        return batch

    def _seconds_to_next_timeout(self):
        if not self._queues:
            return None
        now = self._clock()
        earliest = min(queue[0].opened for queue in self._queues.values())

        return max(earliest + self.options.batch_timeout_seconds - now, 0.0)

    def _claim(self, batch):
        """Marks the batch's live calls running; drops those past deadline."""
        now = self._clock()
        live = []
        for task in batch.tasks:
            if task.state != _QUEUED:
                continue
            if task.deadline is not None and task.deadline <= now:
                task.state = _DROPPED
                task.finish(error=DeadlineExceeded("Deadline exceeded in batch queue"))
                continue
            task.state = _RUNNING
            live.append(task)

        return live

    def _run_batch(self, batch, tasks):
        try:
            outputs = self._invoke(batch, tasks)
        except Exception as error:  # Sent back to the callers, never lost.
            if len(tasks) == 1:
                tasks[0].finish(error=error)
                return
            # Find the faulty calls: each runs again on its own.
            for task in tasks:
                self._run_batch(batch, [task])
            return

        offset = 0
        for task in tasks:
            task.finish(
                outputs={
                    name: outputs[name][offset : offset + task.size]
                    for name in task.output_names
                }
            )
            offset += task.size

    def _invoke(self, batch, tasks):
        started = self._clock()
        size = sum(task.size for task in tasks)
        padded = self.options.padded_size(size)

        inputs = {}
        for key in tasks[0].inputs:
            rows = np.concatenate([task.inputs[key] for task in tasks])
            if padded > size:
                padding = np.repeat(rows[:1], padded - size, axis=0)
                rows = np.concatenate([rows, padding])
            inputs[key] = rows

        with self._condition:
            self.invocations += 1
        outputs = batch.version.run(batch.signature_name, inputs)
        for name, value in outputs.items():
            if np.ndim(value) == 0 or len(value) != padded:
                raise ServingError(
                    f"output {name!r} is not batched along its first dimension"
                )
        log.info(
            "batch: %d calls, %d rows padded to %d, %s of version %s in %.1f ms",
            len(tasks),
            size,
            padded,
            batch.signature_name,
            getattr(batch.version, "version", "?"),
            (self._clock() - started) * 1000,
        )

        return outputs


def _batch_size(inputs):
    sizes = set()
    for key, value in inputs.items():
        if np.ndim(value) == 0:
            raise InvalidArgument(
                f"Batching Run() input tensors must have at least one dimension; "
                f"{key!r} is a scalar"
            )
        sizes.add(len(value))
    if len(sizes) != 1:
        raise InvalidArgument(
            "Batching Run() input tensors must have equal 0th-dimension size"
        )

    return sizes.pop()


def _shape_key(inputs):
    return tuple(
        sorted((key, value.dtype.str, value.shape[1:]) for key, value in inputs.items())
    )


def _select(outputs, output_names):
    return {name: outputs[name] for name in output_names}
