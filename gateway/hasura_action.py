"""The handler of Hasura's ``classifyImage`` action.

Hasura (``hasura/metadata/actions.yaml``) POSTs each call of the mutation
``classifyImage(url: String!, topK: Int)`` to ``/hasura/actions/classify``
with the shared secret in the header ``X-DeepClassify-Action-Secret``
(Hasura reads it from its environment variable
``DEEPCLASSIFY_ACTION_SECRET``; the gateway from its ``ACTION_SECRET``
setting, the same variable). The body is Hasura's action payload::

    {"action": {"name": "classifyImage"},
     "input": {"url": "https://...", "topK": 3},
     "session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "42"},
     "request_query": "mutation { ... }"}

Unknown keys are ignored. The image is fetched and classified by the same
code as ``POST /api/v1/classify`` and recorded in the history with source
``graphql-action`` and the session's role and user id. The answer is the
``ClassifyImageOutput`` object; its ``history_id`` joins the history row
through the action's relationship ``history``. The handler waits up to
``ACTION_HISTORY_WAIT_SECONDS`` for that row to be written; ``recorded``
says whether it was (when it is false the relationship answers null).

Errors answer Hasura's error shape, ``{"message": ..., "extensions":
{"code": ..., "status": ...}}``, always with a 4xx status, because Hasura
passes an error's message on to the client only with a 4xx: errors the REST
API answers 502, 503 or 504 (the URL's server failed, the model server is
unavailable, a timeout) are answered 400 here, their REST status in
``extensions.status``. The codes are the slugs of ``gateway.errors``
(``unauthorized``, ``forbidden``, ``bad-request``, ``url-refused``,
``upstream-error``...).
"""

import hmac
import logging
import time

import flask

from gateway import history
from gateway.classify import classify_images, stage
from gateway.errors import ApiError, BadRequest, Forbidden, Unauthorized
from gateway.fetch import fetch_image_bytes
from gateway.routes import read_top_k

log = logging.getLogger(__name__)

actions = flask.Blueprint("hasura_actions", __name__)

ACTION_NAME = "classifyImage"
SECRET_HEADER = "X-DeepClassify-Action-Secret"
SOURCE = "graphql-action"
FORWARDED_STATUS = 400
"""Status of errors that the REST API answers with a 5xx."""


def _check_secret():
    secret = flask.current_app.config["DEEPCLASSIFY"]["ACTION_SECRET"]
    if not secret:
        raise Forbidden(
            "the classifyImage action is disabled: the gateway has no "
            "DEEPCLASSIFY_ACTION_SECRET setting"
        )
    given = flask.request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized(f"the {SECRET_HEADER} header is missing or wrong")


def _read_payload():
    """Returns ``(url, top_k, requester)`` from Hasura's action payload."""
    payload = flask.request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise BadRequest("the body must be Hasura's action payload, a JSON object")

    action = payload.get("action")
    name = action.get("name") if isinstance(action, dict) else None
    if name != ACTION_NAME:
        raise BadRequest(
            f"this handler serves the action {ACTION_NAME}; received {name!r}"
        )

    arguments = payload.get("input")
    if not isinstance(arguments, dict):
        raise BadRequest('the payload needs an "input" object with a "url"')
    url = arguments.get("url")
    if not isinstance(url, str) or not url.strip():
        raise BadRequest('the input needs a "url" string naming an image')
    try:
        top_k = read_top_k(flask.request, {"top_k": arguments.get("topK")})
    except BadRequest as error:
        # The argument is named topK in the GraphQL schema.
        raise BadRequest(error.detail.replace("top_k", "topK", 1)) from None

    session = payload.get("session_variables")
    session = {
        str(key).lower(): value
        for key, value in (session if isinstance(session, dict) else {}).items()
    }
    requester = (session.get("x-hasura-role"), session.get("x-hasura-user-id"))

    return url, top_k, requester


@actions.post("/hasura/actions/classify")
def classify_action():
    """Runs the classifyImage action: fetch, classify, record, answer."""
    try:
        _check_secret()
        url, top_k, requester = _read_payload()
        for name in ("fetch", "decode", "inference"):
            flask.g.stages.setdefault(name, 0.0)
        started = time.perf_counter()
        data = fetch_image_bytes(url, flask.current_app.extensions["fetch_policy"])
        stage("fetch", started)
        (result,) = classify_images([(data, SOURCE)], top_k)
        if isinstance(result, ApiError):
            raise result
    except ApiError as error:
        return _hasura_error(error)

    flask.g.stages["total"] = round((time.perf_counter() - flask.g.started) * 1000, 2)
    answer = {**result, "timing_ms": dict(flask.g.stages)}
    recorded = history.record_answer(answer, url=url, requester=requester)
    wait = flask.current_app.config["DEEPCLASSIFY"]["ACTION_HISTORY_WAIT_SECONDS"]
    written = recorded.wait(wait)

    return {
        "history_id": str(recorded.id),
        "recorded": written,
        "model_name": answer["model"]["name"],
        "model_version": answer["model"]["version"],
        "weights": answer["model"]["weights"],
        "image_width": answer["image"]["width"],
        "image_height": answer["image"]["height"],
        "image_format": answer["image"]["format"],
        "image_sha256": answer["image"]["sha256"],
        "predictions": answer["predictions"],
    }


def _hasura_error(error):
    status = error.status if error.status < 500 else FORWARDED_STATUS
    if error.status >= 500:
        flask.g.error = error.detail
    body = {
        "message": error.detail,
        "extensions": {"code": error.slug, "status": error.status},
    }

    return flask.jsonify(body), status, error.headers
