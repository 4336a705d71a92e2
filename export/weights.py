"""Builds InceptionV3 with weights from ImageNet, a local file or a seed.

Keras downloads the ImageNet weights on first use and caches them in
``~/.keras/models``. On machines without network access that download
fails; ``auto`` then falls back to seeded random weights, and the exported
model says so in every answer (see ``deepclassify.contract``).
"""

import logging
import pathlib
import socket

from deepclassify import contract

log = logging.getLogger(__name__)

AUTO = "auto"
IMAGENET_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
DOWNLOAD_TIMEOUT_SECONDS = 30.0
"""Socket timeout while Keras downloads the weights, so no export hangs."""


class WeightsUnavailable(RuntimeError):
    """The requested weights cannot be loaded on this machine."""


def build_model(weights=AUTO, seed=0):
    """Builds Keras InceptionV3 returning logits (no softmax).

    Args:
        weights: ``"imagenet"`` (Keras' download or its cache), ``"random"``
            (seeded initialisation), ``"auto"`` (ImageNet when it can be had,
            otherwise random with a warning), or the path of a local ``.h5``
            weights file for the same architecture. Defaults to ``"auto"``.
        seed: seed of the random initialisation; the same seed always gives
            the same weights. Defaults to 0.

    Returns:
        A ``(model, origin)`` pair; ``origin`` is what the model will report
        as its weights: ``"imagenet"``, ``"random"`` or ``"file:<name>"``.

    Raises:
        WeightsUnavailable: ``"imagenet"`` could not be downloaded, or the
            weights file does not exist or does not fit the network.
    """
    import keras

    if weights == AUTO:
        return _build_auto(seed)

    if weights == contract.WEIGHTS_RANDOM:
        keras.utils.set_random_seed(seed)
        model = keras.applications.InceptionV3(weights=None, classifier_activation=None)
        return model, contract.WEIGHTS_RANDOM

    if weights == contract.WEIGHTS_IMAGENET:
        return _build_imagenet(), contract.WEIGHTS_IMAGENET

    path = pathlib.Path(weights)
    if not path.is_file():
        raise WeightsUnavailable(
            f"weights must be 'auto', 'imagenet', 'random' or an existing .h5 "
            f"file; received {weights!r}"
        )
    try:
        model = keras.applications.InceptionV3(
            weights=str(path), classifier_activation=None
        )
    except (ValueError, OSError) as error:
        raise WeightsUnavailable(f"cannot load weights from {path}: {error}") from error

    return model, contract.WEIGHTS_FILE_PREFIX + path.name


def _build_imagenet():
    import keras

    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_SECONDS)
    try:
        return keras.applications.InceptionV3(
            weights="imagenet", classifier_activation=None
        )
    except Exception as error:  # Keras wraps network errors in several types.
        raise WeightsUnavailable(
            f"cannot download the ImageNet weights ({error}); pass --weights PATH "
            f"with a local copy of {IMAGENET_WEIGHTS_FILE} or --weights random"
        ) from error
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _build_auto(seed):
    try:
        return _build_imagenet(), contract.WEIGHTS_IMAGENET
    except WeightsUnavailable as error:
        banner = "!" * 72
        log.warning(
            "%s\nImageNet weights are not available: %s\nExporting RANDOM "
            "weights (seed %d). Every answer of this model version will say "
            "weights=random and its classes mean nothing.\n%s",
            banner,
            error,
            seed,
            banner,
        )
        return build_model(contract.WEIGHTS_RANDOM, seed)
