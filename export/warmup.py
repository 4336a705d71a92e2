"""Writes the warmup requests TensorFlow Serving replays before serving.

TensorFlow Serving looks for ``assets.extra/tf_serving_warmup_requests`` in
each version folder: a TFRecord file of ``PredictionLog`` records. It runs
them after loading the version and before reporting it ``AVAILABLE``, so
the first real callers do not pay for lazy initialisation. The local model
server (``serving/model_store.py``) replays the same file.

The requests are real photos, scikit-image's sample images, through both
signatures and at two batch sizes.
"""

import logging
import pathlib

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from deepclassify import contract
from export import preprocessing

log = logging.getLogger(__name__)

CLASSIFY_BATCHES = (("chelsea.png",), ("coffee.png", "rocket.jpg"))
"""Photos sent to ``classify_images``, one request per tuple."""
PIXEL_BATCHES = (("chelsea.png",),)
"""Photos sent to ``serving_default`` as pixels, one request per tuple."""


def photo_folder():
    """Returns scikit-image's folder of sample photos.

    Raises:
        RuntimeError: scikit-image is not installed (it comes with
            ``requirements/model.txt``).
    """
    try:
        import skimage.data
    except ImportError as error:
        raise RuntimeError(
            "the warmup requests are built from scikit-image's sample photos; "
            "install requirements/model.txt"
        ) from error

    return pathlib.Path(skimage.data.__file__).parent


def warmup_requests(folder=None):
    """Builds the warmup requests.

    Args:
        folder: where the photos are. Defaults to scikit-image's folder.

    Returns:
        A list of ``PredictRequest`` messages.
    """
    folder = photo_folder() if folder is None else pathlib.Path(folder)
    requests = []

    for names in CLASSIFY_BATCHES:
        request = _request(contract.CLASSIFY_SIGNATURE)
        files = [(folder / name).read_bytes() for name in names]
        request.inputs[contract.INPUT_IMAGE_BYTES].CopyFrom(
            tf.make_tensor_proto(files, dtype=tf.string, shape=[len(files)])
        )
        requests.append(request)

    for names in PIXEL_BATCHES:
        request = _request(contract.SERVING_SIGNATURE)
        files = tf.constant([(folder / name).read_bytes() for name in names])
        pixels = preprocessing.decode_batch(files)
        request.inputs[contract.INPUT_IMAGES].CopyFrom(tf.make_tensor_proto(pixels))
        requests.append(request)

    return requests


def _request(signature_name):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = signature_name

    return request


def write_warmup_file(path, folder=None):
    """Writes the warmup requests as a TFRecord of ``PredictionLog``.

    Args:
        path: the file to write, normally ``<version>/`` +
            ``deepclassify.contract.WARMUP_FILE``.
        folder: where the photos are. Defaults to scikit-image's folder.

    Returns:
        The number of records written.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    requests = warmup_requests(folder)

    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            record = prediction_log_pb2.PredictionLog()
            record.predict_log.request.CopyFrom(request)
            writer.write(record.SerializeToString())
    log.info("wrote %d warmup requests to %s", len(requests), path)

    return len(requests)
