"""The model's own speed: an exported SavedModel called in-process.

This is the ceiling the served path is compared with: the signature the
model server runs, called directly on batches of the photos' pixels, with
no HTTP, decoding or gRPC around it. It also compares the logits of two
exports (fp32 and bf16) on the same photos.
"""

import itertools
import time

import numpy as np

from bench.load import summarize
from deepclassify import contract

TOP_K = 5


def load_signature(version_dir):
    """Loads the serving signature of one exported version.

    Args:
        version_dir: a version folder written by ``python -m export``.

    Returns:
        A function taking ``images`` (uint8 ``[batch, 299, 299, 3]``) and
        returning the contract's outputs.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    function = loaded.signatures[contract.SERVING_SIGNATURE]
    # The loaded object owns the variables; keep it alive with the function.
    function.keep_alive = loaded

    return function


def batch_of(pixels, size):
    """Stacks ``size`` images, taking the photos in turn."""
    return np.stack([pixels[index % len(pixels)] for index in range(size)])


def measure_batches(signature, pixels, batch_sizes, max_seconds, max_calls, label):
    """Times the signature at each batch size.

    Each size gets one untimed call first, then calls until ``max_calls``
    or ``max_seconds`` (at least two calls).

    Args:
        signature: from ``load_signature``.
        pixels: uint8 ``[299, 299, 3]`` arrays of the photos.
        batch_sizes: the sizes to try.
        max_seconds: time limit per batch size.
        max_calls: call limit per batch size.
        label: names the runs, e.g. ``"raw fp32"``.

    Returns:
        One ``Stats`` per batch size, in images per second; the latency is
        that of a whole call.
    """
    import tensorflow as tf

    results = []
    for size in batch_sizes:
        images = tf.constant(batch_of(pixels, size))
        signature(images=images)

        latencies = []
        started = time.perf_counter()
        while len(latencies) < max_calls and (
            len(latencies) < 2 or time.perf_counter() - started < max_seconds
        ):
            sent = time.perf_counter()
            signature(images=images)[contract.OUTPUT_LOGITS].numpy()
            latencies.append((time.perf_counter() - sent) * 1000)
        seconds = time.perf_counter() - started
        results.append(summarize(label, size, latencies, 0, seconds, items=size))

    return results


def logits_per_photo(signature, pixels):
    """Returns the logits ``[photos, 1000]``, one photo per call."""
    import tensorflow as tf

    return np.stack(
        [
            signature(images=tf.constant(image[np.newaxis]))[
                contract.OUTPUT_LOGITS
            ].numpy()[0]
            for image in pixels
        ]
    )


def compare_logits(reference, other):
    """Compares two models' logits on the same photos, as the tests do.

    Args:
        reference: logits ``[photos, 1000]`` of the reference (fp32).
        other: logits of the model compared (bf16).

    Returns:
        ``(same_top5, worst)``: on how many photos the top-5 classes agree
        in order, and the largest ``|other - reference|`` over all photos
        in units of the reference logits' standard deviation.
    """
    same = 0
    worst = 0.0
    for expected, received in zip(reference, other, strict=True):
        expected = expected.astype(np.float64)
        received = received.astype(np.float64)
        top_expected = np.argsort(-expected, kind="stable")[:TOP_K]
        top_received = np.argsort(-received, kind="stable")[:TOP_K]
        same += int(np.array_equal(top_expected, top_received))
        spread = np.std(expected)
        worst = max(worst, float(np.max(np.abs(received - expected)) / spread))

    return same, worst


def caller(signature, pixels):
    """Returns a function running the signature on one photo per call, in turn."""
    import tensorflow as tf

    batches = itertools.cycle([tf.constant(image[np.newaxis]) for image in pixels])

    def call():
        signature(images=next(batches))[contract.OUTPUT_LOGITS].numpy()

    return call
