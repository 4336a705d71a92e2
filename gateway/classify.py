"""Classification of one or more images: cache, decode, one Predict call.

The single and the batch endpoint both come here with the bytes they
received or fetched. Each image is looked up in the answer cache, the
misses are decoded, and all decoded images go to the model in one Predict
call as one batch tensor. An image that cannot be decoded gets its own
error and does not stop the others.
"""

import hashlib
import time

import flask
import numpy as np

from deepclassify import contract, labels
from gateway import imaging, metrics
from gateway.errors import ApiError


def stage(name, started):
    """Adds the milliseconds since ``started`` to this request's stage."""
    seconds = time.perf_counter() - started
    stages = flask.g.stages
    stages[name] = round(stages.get(name, 0.0) + seconds * 1000, 2)
    metrics.record_stage(name, seconds)


def classify_images(images, top_k):
    """Classifies images, answering each with a result or its own error.

    Args:
        images: a list of ``(data, source)`` pairs (``source`` is
            ``"upload"`` or ``"url"``), or of ``ApiError`` for an image
            that could not even be received.
        top_k: the number of classes answered per image.

    Returns:
        A list in the same order holding, for each image, either its answer
        (``predictions``, ``model``, ``image``, ``cached``) or an
        ``ApiError``.

    Raises:
        ApiError: the model server failed (503, 504...); a batch then has
            no answer at all, since no image could be classified.
    """
    app = flask.current_app
    config = app.config["DEEPCLASSIFY"]
    cache = app.extensions["answer_cache"]
    results = list(images)
    pending = []

    # Answers from the cache; the others decoded, each on its own.
    started = time.perf_counter()
    for index, item in enumerate(images):
        if isinstance(item, ApiError):
            continue
        data, source = item
        digest = hashlib.sha256(data).hexdigest()
        cached = cache.get(digest, top_k)
        metrics.record_cache(cached is not None)
        if cached is not None:
            results[index] = _with_source(cached, source, cached=True)
            continue
        try:
            decoded = imaging.decode_image(data, max_pixels=config["MAX_IMAGE_PIXELS"])
        except ApiError as error:
            results[index] = error
            continue
        pending.append((index, digest, source, decoded))
    stage("decode", started)
    if not pending:
        return results

    # One Predict call for every image that needs the model.
    started = time.perf_counter()
    batch = np.stack([decoded.pixels for _, _, _, decoded in pending])
    prediction = app.extensions["model_client"].predict(batch)
    stage("inference", started)
    cache.saw_version(prediction.version)

    names = labels.class_names()
    for row, (index, digest, source, decoded) in enumerate(pending):
        answer = _answer(prediction, row, decoded, digest, names, top_k)
        cache.put(digest, prediction.version, top_k, answer)
        results[index] = _with_source(answer, source, cached=False)

    return results


def _answer(prediction, row, decoded, digest, names, top_k):
    probabilities = prediction.probabilities[row]
    best = np.argsort(-probabilities, kind="stable")[:top_k]

    return {
        "predictions": [
            {
                "class_id": int(index),
                "label": names[index],
                "probability": float(probabilities[index]),
                "logit": float(prediction.logits[row][index]),
            }
            for index in best
        ],
        "model": {
            "name": contract.MODEL_NAME,
            "version": prediction.version,
            "weights": prediction.weights[row],
        },
        "image": {
            "width": decoded.width,
            "height": decoded.height,
            "format": decoded.format,
            "sha256": digest,
        },
    }


def _with_source(answer, source, cached):
    return {
        "predictions": answer["predictions"],
        "model": answer["model"],
        "image": {**answer["image"], "source": source},
        "cached": cached,
    }
