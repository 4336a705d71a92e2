"""The gateway's HTTP routes: the classify API, model status and the page."""

import logging
import re
import time
import uuid

import flask
import numpy as np
import werkzeug.exceptions

from deepclassify import contract
from gateway import history
from gateway.classify import classify_images, stage
from gateway.errors import ApiError, BadRequest, ModelUnavailable
from gateway.fetch import fetch_image_bytes

log = logging.getLogger(__name__)

api = flask.Blueprint("api", __name__)
page = flask.Blueprint("page", __name__)

UI_ROUTES = ("/", "/url", "/upload")
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,9}")


def read_json_body(request, example='{"url": "https://..."}'):
    """Returns the JSON object of the request, or None when it sent no JSON.

    ``example`` shows the expected object in the error messages.
    """
    if not request.is_json:
        return None
    try:
        body = request.get_json()
    except werkzeug.exceptions.ClientDisconnected:
        raise
    except werkzeug.exceptions.BadRequest:
        raise BadRequest(
            f"the body is not valid JSON; send an object such as {example}"
        ) from None
    if not isinstance(body, dict):
        raise BadRequest(f"the JSON body must be an object such as {example}")

    return body


def read_top_k(request, body):
    """Returns the request's ``top_k`` (JSON or form field), checked."""
    config = flask.current_app.config["DEEPCLASSIFY"]
    raw = (body or {}).get("top_k", request.values.get("top_k"))
    if raw is None:
        return config["DEFAULT_TOP_K"]

    limit = config["MAX_TOP_K"]
    if isinstance(raw, bool) or not _WHOLE_NUMBER.fullmatch(str(raw).strip()):
        raise BadRequest(
            f"top_k must be a whole number from 1 to {limit}; received {raw!r}"
        )
    value = int(raw)
    if not 1 <= value <= limit:
        raise BadRequest(f"top_k must be from 1 to {limit}; received {value}")

    return value


def _read_image_source(request, body):
    """Returns ``(bytes, source, url)`` from an upload or a JSON url."""
    config = flask.current_app.config["DEEPCLASSIFY"]
    if "image" in request.files:
        if len(request.files.getlist("image")) > 1:
            raise BadRequest(
                "send one 'image' part here; several images go to "
                "/api/v1/classify/batch"
            )
        return request.files["image"].read(), "upload", None

    if body is not None:
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise BadRequest('the JSON body needs a "url" string naming an image')
        started = time.perf_counter()
        data = fetch_image_bytes(url, flask.current_app.extensions["fetch_policy"])
        stage("fetch", started)
        return data, "url", url

    if request.files:
        names = ", ".join(sorted(request.files))
        raise BadRequest(
            f"the image must be in the multipart field 'image'; received {names}"
        )
    raise BadRequest(
        "send an image as the multipart field 'image', or JSON "
        f'{{"url": "https://..."}}; at most {config["MAX_UPLOAD_BYTES"]:,} bytes'
    )


@api.post("/api/v1/classify")
def classify():
    """Classifies one image, uploaded or fetched by URL."""
    request = flask.request
    body = read_json_body(request)
    top_k = read_top_k(request, body)
    for name in ("fetch", "decode", "inference"):
        flask.g.stages.setdefault(name, 0.0)

    data, source, url = _read_image_source(request, body)
    (result,) = classify_images([(data, source)], top_k)
    if isinstance(result, ApiError):
        raise result
    flask.g.stages["total"] = round((time.perf_counter() - flask.g.started) * 1000, 2)
    answer = {**result, "timing_ms": dict(flask.g.stages)}
    history.record_answer(answer, url=url)

    return answer


@api.get("/api/v1/model")
def model_info():
    """Describes the model that answers: name, version, weights, state."""
    client = flask.current_app.extensions["model_client"]
    statuses = client.status()
    available = [version for version, state, _ in statuses if state == "AVAILABLE"]
    weights = None
    version = max(available) if available else None
    if version is not None:
        weights = _weights_of(version)

    return {
        "name": contract.MODEL_NAME,
        "version": version,
        "weights": weights,
        "random_weights": weights == contract.WEIGHTS_RANDOM,
        "state": "AVAILABLE"
        if available
        else (statuses[-1][1] if statuses else "UNKNOWN"),
        "versions": [
            {"version": number, "state": state, "error": error or None}
            for number, state, error in statuses
        ],
    }


def _weights_of(version):
    """Asks the model for its weights origin, once per version."""
    cache = flask.current_app.extensions["weights_by_version"]
    if version not in cache:
        client = flask.current_app.extensions["model_client"]
        blank = np.zeros(
            (1, contract.IMAGE_SIZE, contract.IMAGE_SIZE, contract.CHANNELS), np.uint8
        )
        prediction = client.predict(blank)
        cache[prediction.version] = prediction.weights[0]
        if prediction.version != version:
            return prediction.weights[0]

    return cache[version]


@api.get("/healthz")
def healthz():
    """Answers 200 while the process serves requests."""
    return {"status": "ok"}


@api.get("/readyz")
def readyz():
    """Answers 200 when the model server has the model AVAILABLE."""
    client = flask.current_app.extensions["model_client"]
    statuses = client.status()
    if not any(state == "AVAILABLE" for _, state, _ in statuses):
        states = ", ".join(f"{v}: {s}" for v, s, _ in statuses) or "no versions"
        raise ModelUnavailable(f"the model is not AVAILABLE yet ({states})")

    return {"status": "ready"}


@api.get("/api/v1/history")
def history_list():
    """Lists recorded classifications, newest first, a page at a time."""
    args = flask.request.args
    config = flask.current_app.config["DEEPCLASSIFY"]
    limit = args.get("limit", config["HISTORY_DEFAULT_LIMIT"])
    maximum = config["HISTORY_MAX_LIMIT"]
    if not _WHOLE_NUMBER.fullmatch(str(limit)) or not 1 <= int(limit) <= maximum:
        raise BadRequest(
            f"limit must be a whole number from 1 to {maximum}; received {limit!r}"
        )
    before = args.get("before")
    if before is not None:
        try:
            before = uuid.UUID(before)
        except ValueError:
            raise BadRequest(
                "before must be the id of a classification (a UUID, as answered "
                f"in next_before); received {before!r}"
            ) from None

    store = flask.current_app.extensions["history"]
    items, more = store.page(int(limit), before)

    return {"items": items, "next_before": items[-1]["id"] if more else None}


@api.get("/api/v1/history/status")
def history_status():
    """Counts this worker's history rows: queued, written, failed, dropped."""
    return flask.current_app.extensions["history"].stats()


@page.get("/")
@page.get("/url")
@page.get("/upload")
def index():
    """Serves the single page; it shows the view matching the path."""
    return flask.send_from_directory(
        flask.current_app.config["DEEPCLASSIFY"]["UI_FOLDER"], "index.html"
    )


@page.get("/static/<path:name>")
def static_file(name):
    """Serves the page's scripts and styles."""
    return flask.send_from_directory(
        flask.current_app.config["DEEPCLASSIFY"]["UI_FOLDER"], name
    )
