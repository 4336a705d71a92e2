"""The local model server's errors, each with the gRPC status it ends a call with.

Handlers raise these; ``serving.service`` turns each into its status code
and message in one place, with TensorFlow Serving's wording where the
message is one a client may already match on.
"""

import grpc


class ServingError(Exception):
    """Ends the call with ``code`` and the error's message."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """The request does not fit the signature or the server's limits."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class ServableNotFound(ServingError, LookupError):
    """No loaded version matches the request's ``ModelSpec``."""

    code = grpc.StatusCode.NOT_FOUND


class QueueFull(ServingError):
    """The batch queue holds ``max_enqueued_batches`` already."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServingError):
    """The call's deadline passed before its answer was ready."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
