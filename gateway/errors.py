"""The gateway's errors, and the one JSON body every error answers with.

Lower-level errors (Pillow, gRPC, the network) are translated into these
types where they arise. ``problem_response`` turns any of them into an
``application/problem+json`` answer (RFC 9457): ``type``, ``title``,
``status``, ``detail``.
"""

import flask

PROBLEM_TYPE_BASE = "https://deepclassify.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error answered to the client; subclasses set status and title."""

    status = 500
    title = "Internal error"
    slug = "internal-error"

    def __init__(self, detail, headers=None):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class Unauthorized(ApiError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(ApiError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class UrlRefused(ApiError):
    status = 400
    title = "URL refused"
    slug = "url-refused"


class PayloadTooLarge(ApiError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class UnsupportedImage(ApiError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class CorruptImage(ApiError):
    status = 422
    title = "Image cannot be decoded"
    slug = "corrupt-image"


class UpstreamError(ApiError):
    status = 502
    title = "The image URL answered an error"
    slug = "upstream-error"


class ModelUnavailable(ApiError):
    status = 503
    title = "Model server unavailable"
    slug = "model-unavailable"


class ModelBusy(ModelUnavailable):
    """Refused before calling: this worker's model calls are all taken."""

    title = "Model server busy"
    slug = "model-busy"


class HistoryUnavailable(ApiError):
    status = 503
    title = "History unavailable"
    slug = "history-unavailable"


class UpstreamTimeout(ApiError):
    status = 504
    title = "Timed out"
    slug = "timeout"


def problem_body(error):
    """Returns the problem body of an ``ApiError`` as a dict."""
    return {
        "type": PROBLEM_TYPE_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }


def problem_response(error):
    """Builds the JSON answer for an ``ApiError``.

    Args:
        error: the error to answer.

    Returns:
        A Flask response with the problem body, status and any headers.
    """
    response = flask.jsonify(problem_body(error))
    response.status_code = error.status
    response.content_type = PROBLEM_CONTENT_TYPE
    response.headers.update(error.headers)

    return response
