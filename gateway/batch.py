"""``POST /api/v1/classify/batch``: several images in one request.

Up to ``MAX_BATCH_IMAGES`` images, either uploaded (the multipart field
``image``, repeated) or named by URL (JSON ``{"urls": [...]}``); one batch
holds one kind, since a multipart form does not keep the order of files
and other fields. URLs are fetched a few at a time
(``BATCH_FETCH_THREADS``). Every image that decodes goes to the model in
one Predict call. The answer lists, in the order sent, each image's answer
(``status`` 200) or its own problem body (its ``status`` 4xx).
"""

import concurrent.futures
import time

import flask

from gateway import history
from gateway.classify import classify_images, stage
from gateway.errors import ApiError, BadRequest, PayloadTooLarge, problem_body
from gateway.fetch import fetch_image_bytes
from gateway.routes import read_json_body, read_top_k

blueprint = flask.Blueprint("batch", __name__)


@blueprint.post("/api/v1/classify/batch")
def classify_batch():
    """Classifies up to ``MAX_BATCH_IMAGES`` images, answering each."""
    config = flask.current_app.config["DEEPCLASSIFY"]
    flask.g.body_limit = config["MAX_BATCH_BYTES"]
    flask.request.max_content_length = config["MAX_BATCH_BYTES"] + 64 * 1024
    request = flask.request
    body = read_json_body(request, example='{"urls": ["https://...", ...]}')
    top_k = read_top_k(request, body)
    for name in ("fetch", "decode", "inference"):
        flask.g.stages.setdefault(name, 0.0)

    if body is not None:
        images = _fetched(_urls(body, config["MAX_BATCH_IMAGES"]), config)
    else:
        images = _uploaded(request, config)
    results = classify_images(images, top_k)
    flask.g.stages["total"] = round((time.perf_counter() - flask.g.started) * 1000, 2)
    urls = body["urls"] if body is not None else [None] * len(results)
    for result, url in zip(results, urls, strict=True):
        if not isinstance(result, ApiError):
            answer = {**result, "timing_ms": dict(flask.g.stages)}
            history.record_answer(answer, url=url)

    return {
        "results": [
            problem_body(result)
            if isinstance(result, ApiError)
            else {"status": 200, **result}
            for result in results
        ],
        "timing_ms": dict(flask.g.stages),
    }


def _check_count(count, limit):
    if count == 0:
        raise BadRequest(
            "send images as the multipart field 'image' (repeated), or JSON "
            '{"urls": ["https://...", ...]}'
        )
    if count > limit:
        raise BadRequest(f"a batch holds at most {limit} images; received {count}")


def _urls(body, limit):
    urls = body.get("urls")
    if not isinstance(urls, list):
        raise BadRequest('the JSON body needs "urls", a list of image URLs')
    _check_count(len(urls), limit)

    return urls


def _fetched(urls, config):
    policy = flask.current_app.extensions["fetch_policy"]

    def fetch(url):
        if not isinstance(url, str):
            return BadRequest(f"each URL must be a string; received {url!r:.80}")
        try:
            return fetch_image_bytes(url, policy), "url"
        except ApiError as error:
            return error

    started = time.perf_counter()
    threads = max(1, min(len(urls), config["BATCH_FETCH_THREADS"]))
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        images = list(pool.map(fetch, urls))
    stage("fetch", started)

    return images


def _uploaded(request, config):
    files = request.files.getlist("image")
    if not files and request.files:
        names = ", ".join(sorted(request.files))
        raise BadRequest(
            f"the images must be in the multipart field 'image'; received {names}"
        )
    _check_count(len(files), config["MAX_BATCH_IMAGES"])

    limit = config["MAX_UPLOAD_BYTES"]
    images = []
    for upload in files:
        data = upload.read(limit + 1)
        if len(data) > limit:
            images.append(
                PayloadTooLarge(
                    f"the image {upload.filename!r:.80} is larger than {limit:,} "
                    f"bytes, the most accepted"
                )
            )
        else:
            images.append((data, "upload"))

    return images
