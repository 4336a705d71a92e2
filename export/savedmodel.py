"""Writes a Keras classifier as a versioned SavedModel.

Each version carries two signatures (``serving_default`` on pixels and
``classify_images`` on encoded files, see ``deepclassify.contract``) and a
warmup file of real requests for both (``export/warmup.py``).

A version is written into a hidden temporary folder beside the others and
renamed into place when complete, so a model server watching the base
folder never loads half a version.
"""

import datetime
import json
import logging
import os
import pathlib
import shutil
import tempfile

import tensorflow as tf

from deepclassify import contract, labels
from export import preprocessing, warmup

log = logging.getLogger(__name__)


class ServingModule(tf.Module):
    """The model with the contract's two signatures around it."""

    def __init__(self, model, weights_origin, class_names):
        super().__init__()
        self.model = model
        self.weights_origin = weights_origin
        # A graph constant: the labels travel inside the SavedModel.
        self.class_names = tf.constant(class_names, dtype=tf.string)

    def _logits(self, images):
        scaled = tf.cast(images, tf.float32) / contract.PIXEL_SCALE
        scaled += contract.PIXEL_OFFSET

        return self.model(scaled, training=False)

    def _weights(self, batch_of):
        return tf.fill(tf.shape(batch_of)[:1], self.weights_origin)

    @tf.function(
        input_signature=[
            tf.TensorSpec(
                [None, contract.IMAGE_SIZE, contract.IMAGE_SIZE, contract.CHANNELS],
                tf.uint8,
                name=contract.INPUT_IMAGES,
            )
        ]
    )
    def serve_pixels(self, images):
        """Classifies a batch of 299x299 RGB uint8 images."""
        logits = self._logits(images)

        return {
            contract.OUTPUT_LOGITS: logits,
            contract.OUTPUT_PROBABILITIES: tf.nn.softmax(logits),
            contract.OUTPUT_WEIGHTS: self._weights(images),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name=contract.INPUT_IMAGE_BYTES)
        ]
    )
    def classify_images(self, image_bytes):
        """Classifies a batch of encoded image files; answers the top 5."""
        logits = self._logits(preprocessing.decode_batch(image_bytes))

        top = tf.math.top_k(logits, k=contract.TOP_K)
        probabilities = tf.nn.softmax(logits)

        return {
            contract.OUTPUT_CLASSES: top.indices,
            contract.OUTPUT_LABELS: tf.gather(self.class_names, top.indices),
            contract.OUTPUT_SCORES: tf.gather(probabilities, top.indices, batch_dims=1),
            contract.OUTPUT_LOGITS: logits,
            contract.OUTPUT_WEIGHTS: self._weights(image_bytes),
        }


def next_version(base_path):
    """Returns one more than the highest numbered version folder, or 1."""
    versions = [
        int(entry.name)
        for entry in pathlib.Path(base_path).glob("*")
        if entry.is_dir() and entry.name.isdigit()
    ]

    return max(versions, default=0) + 1


def write_version(model, weights_origin, base_path, version=None, details=None):
    """Exports ``model`` as a new version under ``base_path``.

    Args:
        model: a Keras model mapping [-1, 1] scaled images to logits.
        weights_origin: what the model reports as its weights.
        base_path: the model's base folder, as in ``models.config``.
        version: the version number. Defaults to the next free one.
        details: extra facts for the version's info file. Defaults to none.

    Returns:
        The path of the version folder written.

    Raises:
        FileExistsError: the version folder exists already.
    """
    base_path = pathlib.Path(base_path)
    base_path.mkdir(parents=True, exist_ok=True)
    version = next_version(base_path) if version is None else int(version)
    target = base_path / str(version)
    if target.exists():
        raise FileExistsError(f"version folder {target} exists already")

    staging = pathlib.Path(tempfile.mkdtemp(prefix=".export-", dir=base_path))
    try:
        module = ServingModule(model, weights_origin, labels.class_names())
        tf.saved_model.save(
            module,
            str(staging),
            signatures={
                contract.SERVING_SIGNATURE: module.serve_pixels,
                contract.CLASSIFY_SIGNATURE: module.classify_images,
            },
        )
        warmup.write_warmup_file(staging / contract.WARMUP_FILE)
        _write_info(staging, version, weights_origin, details or {})
        # mkdtemp makes the folder private; servers may run as another user.
        os.chmod(staging, 0o755)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    log.info("exported %s version %d (weights: %s)", target, version, weights_origin)

    return target


def _write_info(folder, version, weights_origin, details):
    import keras

    info = {
        "model": contract.MODEL_NAME,
        "version": version,
        "weights": weights_origin,
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        **details,
    }
    path = folder / contract.MODEL_INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
