"""DeepClassify's HTTP gateway: photos in, ImageNet classes out.

``create_app`` builds the Flask app; gunicorn serves it (see
``gateway/gunicorn.conf.py``). The gateway decodes images itself and asks
the model server over gRPC; it never imports TensorFlow.
"""

import logging
import time
import uuid

import flask
import werkzeug.exceptions

from gateway import batch, errors, metrics, openapi
from gateway.body import discard_body
from gateway.cache import AnswerCache
from gateway.config import load_config
from gateway.fetch import FetchPolicy
from gateway.hasura_action import actions
from gateway.history import HistoryStore
from gateway.model_client import ModelClient
from gateway.routes import api, page

log = logging.getLogger("gateway.requests")

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128


def create_app(config=None):
    """Builds the gateway app.

    Args:
        config: settings overriding the defaults and the environment (see
            ``gateway.config``). Defaults to none.

    Returns:
        The Flask app. No connection is opened until the first request.
    """
    settings = load_config(config)
    app = flask.Flask(__name__, static_folder=None)
    app.config["DEEPCLASSIFY"] = settings
    # Werkzeug refuses larger bodies with 413 before they are read; a little
    # room is left for the multipart framing around the file itself.
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_UPLOAD_BYTES"] + 64 * 1024
    app.json.sort_keys = False

    app.extensions["model_client"] = ModelClient(
        settings["MODEL_SERVER"],
        deadline_seconds=settings["MODEL_DEADLINE_SECONDS"],
        status_deadline_seconds=settings["MODEL_STATUS_DEADLINE_SECONDS"],
        lb_policy=settings["MODEL_LB_POLICY"],
        max_concurrent_calls=settings["MODEL_MAX_CONCURRENT_CALLS"],
        max_waiting_calls=settings["MODEL_MAX_WAITING_CALLS"],
    )
    app.extensions["fetch_policy"] = FetchPolicy.from_config(settings)
    app.extensions["weights_by_version"] = {}
    app.extensions["answer_cache"] = AnswerCache(
        settings["CACHE_MAX_ENTRIES"], settings["CACHE_VERSION_TTL_SECONDS"]
    )
    app.extensions["history"] = HistoryStore.from_config(settings)

    app.register_blueprint(api)
    app.register_blueprint(page)
    app.register_blueprint(batch.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(actions)
    _register_error_handlers(app)
    _register_request_log(app)

    return app


def _register_error_handlers(app):
    @app.errorhandler(errors.ApiError)
    def on_api_error(error):
        if error.status >= 500:
            flask.g.error = error.detail
        return errors.problem_response(error)

    @app.errorhandler(werkzeug.exceptions.RequestEntityTooLarge)
    def on_too_large(error):
        settings = app.config["DEEPCLASSIFY"]
        limit = flask.g.get("body_limit", settings["MAX_UPLOAD_BYTES"])
        discard_body(
            flask.request.environ,
            settings["DISCARD_MAX_BYTES"],
            settings["DISCARD_TIMEOUT_SECONDS"],
        )
        return errors.problem_response(
            errors.PayloadTooLarge(
                f"the request body is larger than {limit:,} bytes, the most accepted"
            )
        )

    @app.errorhandler(werkzeug.exceptions.HTTPException)
    def on_http_error(error):
        # Keep werkzeug's own headers, such as a 405's Allow.
        headers = {
            name: value
            for name, value in error.get_headers()
            if name.lower() != "content-type"
        }
        problem = errors.ApiError(error.description, headers=headers)
        problem.status = error.code
        problem.title = error.name
        problem.slug = error.name.lower().replace(" ", "-")
        return errors.problem_response(problem)

    @app.errorhandler(Exception)
    def on_unexpected(error):
        log.exception(
            "unexpected error in %s %s", flask.request.method, flask.request.path
        )
        return errors.problem_response(
            errors.ApiError("an unexpected error occurred; it has been logged")
        )


def _register_request_log(app):
    @app.before_request
    def start_request():
        incoming = flask.request.headers.get(REQUEST_ID_HEADER, "")
        if (
            not incoming
            or len(incoming) > MAX_REQUEST_ID_LENGTH
            or not incoming.isprintable()
        ):
            incoming = uuid.uuid4().hex
        flask.g.request_id = incoming
        flask.g.started = time.perf_counter()
        flask.g.stages = {}

    @app.after_request
    def log_request(response):
        response.headers[REQUEST_ID_HEADER] = flask.g.get("request_id", "")
        seconds = time.perf_counter() - flask.g.get("started", time.perf_counter())
        total = seconds * 1000
        rule = flask.request.url_rule
        metrics.record_request(
            flask.request.method,
            rule.rule if rule is not None else "unmatched",
            response.status_code,
            seconds,
        )
        stages = " ".join(
            f"{k}={v}" for k, v in flask.g.get("stages", {}).items() if k != "total"
        )
        log.info(
            "id=%s %s %s status=%d in=%s out=%s total_ms=%.1f %s%s",
            flask.g.get("request_id", "-"),
            flask.request.method,
            flask.request.path,
            response.status_code,
            flask.request.content_length or 0,
            response.calculate_content_length() or 0,
            total,
            stages,
            f" error={flask.g.error!r}" if flask.g.get("error") else "",
        )
        return response
