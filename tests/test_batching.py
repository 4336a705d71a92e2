"""The batcher on a tiny fake model: grouping, padding, queue limits, deadlines."""

import threading
import time

import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions
from serving.config import ConfigError, read_batching_config
from serving.errors import DeadlineExceeded, InvalidArgument, QueueFull
from tools.stack import ROOT


class FakeVersion:
    """Doubles its input; records each batch; can be held mid-run."""

    version = 7

    def __init__(self):
        self.batches = []
        self.running = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def run(self, signature_name, inputs):
        rows = inputs["x"]
        self.batches.append(rows.copy())
        self.running.set()
        self.release.wait(10)
        if (rows < 0).any():
            raise ValueError("negative input")

        return {"double": rows * 2, "total": rows.sum(axis=1)}


@pytest.fixture
def make_batcher():
    batchers = []

    def make(**options):
        batcher = Batcher(BatchingOptions(**options))
        batchers.append(batcher)
        return batcher

    yield make
    for batcher in batchers:
        batcher.stop()


def call_concurrently(batcher, version, inputs, output_names=("double",)):
    """Runs one call per input at once; returns answers or errors in order."""
    results = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def call(index):
        start.wait()
        try:
            results[index] = batcher.run(
                version, "sig", {"x": inputs[index]}, list(output_names), 10.0
            )
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    return results


def test_concurrent_calls_run_together_and_get_their_own_rows(make_batcher):
    batcher = make_batcher(max_batch_size=8, batch_timeout_seconds=1.0)
    version = FakeVersion()
    inputs = [np.full((1, 2), index, np.int32) for index in range(8)]

    results = call_concurrently(batcher, version, inputs, ("double", "total"))

    for index, result in enumerate(results):
        np.testing.assert_array_equal(result["double"], [[2 * index, 2 * index]])
        np.testing.assert_array_equal(result["total"], [2 * index])
    assert batcher.invocations == len(version.batches) < len(inputs)
    assert sum(len(batch) for batch in version.batches) == len(inputs)


def test_a_batch_is_padded_to_the_next_allowed_size(make_batcher):
    batcher = make_batcher(
        max_batch_size=8, batch_timeout_seconds=0.0, allowed_batch_sizes=(2, 4, 8)
    )
    version = FakeVersion()
    rows = np.array([[1, 2], [3, 4], [5, 6]], np.int32)

    answer = batcher.run(version, "sig", {"x": rows}, ["double"], 10.0)

    np.testing.assert_array_equal(answer["double"], rows * 2)
    (batch,) = version.batches
    np.testing.assert_array_equal(batch, [[1, 2], [3, 4], [5, 6], [1, 2]])


def test_a_call_larger_than_max_batch_size_is_invalid(make_batcher):
    batcher = make_batcher(max_batch_size=4)

    with pytest.raises(InvalidArgument) as raised:
        batcher.run(FakeVersion(), "sig", {"x": np.zeros((5, 2))}, ["double"], 10.0)

    assert raised.value.message == (
        "Task size 5 is larger than maximum input batch size 4"
    )


def test_inputs_of_different_sizes_are_invalid(make_batcher):
    batcher = make_batcher()
    inputs = {"x": np.zeros((2, 2)), "y": np.zeros((3, 2))}

    with pytest.raises(InvalidArgument, match="equal 0th-dimension size"):
        batcher.run(FakeVersion(), "sig", inputs, ["double"], 10.0)


def _hold_the_only_thread(batcher, version):
    """Starts a call that stays inside the model until released."""
    version.release.clear()
    thread = threading.Thread(
        target=batcher.run,
        args=(version, "sig", {"x": np.ones((1, 2))}, ["double"], 10.0),
    )
    thread.start()
    assert version.running.wait(10)
    return thread


def test_a_full_queue_answers_queue_full(make_batcher):
    batcher = make_batcher(
        max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1
    )
    version = FakeVersion()
    held = _hold_the_only_thread(batcher, version)
    queued = threading.Thread(
        target=batcher.run,
        args=(version, "sig", {"x": np.full((1, 2), 2.0)}, ["double"], 10.0),
    )
    queued.start()
    while batcher.queued_batches() < 1:
        time.sleep(0.01)

    with pytest.raises(QueueFull) as raised:
        batcher.run(version, "sig", {"x": np.full((1, 2), 3.0)}, ["double"], 10.0)

    assert raised.value.message == (
        "The batch scheduling queue to which this task was submitted is full"
    )
    version.release.set()
    held.join(10)
    queued.join(10)
    assert [batch[0, 0] for batch in version.batches] == [1.0, 2.0]


def test_a_call_past_its_deadline_in_the_queue_is_dropped(make_batcher):
    batcher = make_batcher(max_batch_size=1, num_batch_threads=1)
    version = FakeVersion()
    held = _hold_the_only_thread(batcher, version)

    with pytest.raises(DeadlineExceeded):
        batcher.run(version, "sig", {"x": np.full((1, 2), 5.0)}, ["double"], 0.2)
    version.release.set()
    held.join(10)
    answer = batcher.run(version, "sig", {"x": np.full((1, 2), 6.0)}, ["double"], 10)

    np.testing.assert_array_equal(answer["double"], [[12.0, 12.0]])
    assert [batch[0, 0] for batch in version.batches] == [1.0, 6.0]


def test_a_faulty_call_fails_alone(make_batcher):
    batcher = make_batcher(max_batch_size=4, batch_timeout_seconds=1.0)
    version = FakeVersion()
    inputs = [np.full((1, 2), value, np.int32) for value in (1, -1, 2, 3)]

    results = call_concurrently(batcher, version, inputs)

    assert isinstance(results[1], ValueError)
    for index in (0, 2, 3):
        np.testing.assert_array_equal(results[index]["double"], inputs[index] * 2)


def test_calls_of_different_shapes_are_not_mixed(make_batcher):
    batcher = make_batcher(max_batch_size=4, batch_timeout_seconds=0.2)
    version = FakeVersion()
    inputs = [np.ones((1, 2)), np.ones((1, 3)), np.ones((1, 2)), np.ones((1, 3))]

    results = call_concurrently(batcher, version, inputs)

    for result, rows in zip(results, inputs, strict=True):
        np.testing.assert_array_equal(result["double"], rows * 2)
    assert all(len({row.size for row in batch}) == 1 for batch in version.batches)


def test_options_come_from_the_batching_config():
    parameters = read_batching_config(ROOT / "serving" / "batching.config")

    options = BatchingOptions.from_parameters(parameters)

    assert options == BatchingOptions(
        max_batch_size=16,
        batch_timeout_seconds=0.0,
        num_batch_threads=2,
        max_enqueued_batches=8,
        allowed_batch_sizes=(),
    )
    assert [options.padded_size(size) for size in (1, 3, 5, 16)] == [1, 3, 5, 16]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"max_batch_size": 8, "allowed_batch_sizes": (2, 4)},
            "the last allowed_batch_sizes entry (4) must equal max_batch_size (8)",
        ),
        (
            {"max_batch_size": 8, "allowed_batch_sizes": (4, 2, 8)},
            "allowed_batch_sizes must be positive and increasing; received [4, 2, 8]",
        ),
        ({"num_batch_threads": 0}, "num_batch_threads must be at least 1; received 0"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError) as raised:
        BatchingOptions(**options)

    assert str(raised.value) == message
