"""The gateway's client of the model server (TF Serving's gRPC API).

One channel per process, opened on first use: gunicorn forks its workers
after loading the app, and a gRPC channel must not cross a fork. Calls go
through ``grpc`` ``unary_unary`` on the method paths, with the message
classes of ``deepclassify.tfs_protos`` (no TensorFlow).

gRPC errors are translated here into the gateway's own errors:
``UNAVAILABLE`` and ``NOT_FOUND`` (no model loaded) become 503 with
``Retry-After``, ``DEADLINE_EXCEEDED`` becomes 504. A call that fails with
``UNAVAILABLE`` is retried by gRPC itself (``RETRY_ATTEMPTS`` attempts in
all, backing off up to ``RETRY_MAX_BACKOFF``), which covers a connection
dropped while the model server restarted. The channel reconnects on its
own, trying again at least every ``RECONNECT_MAX_BACKOFF_MS``, so the
gateway recovers within about a second of the model server coming back
(gRPC's default backoff grows to two minutes).

Predict calls pass through a ``CallLimiter`` (``gateway/call_limit.py``):
a bounded number in flight per process, a bounded line of requests
waiting, 503 beyond it.
"""

import dataclasses
import json
import logging
import os
import threading

import grpc
import numpy as np

from deepclassify import contract, tfs_protos
from gateway.call_limit import CallLimiter
from gateway.errors import ApiError, ModelUnavailable, UpstreamTimeout

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = contract.GRPC_MAX_MESSAGE_BYTES
"""Largest message sent or received; the same limit as the model server."""
RETRY_AFTER_SECONDS = 2
"""What a 503 answer tells the client to wait, in seconds."""
RETRY_ATTEMPTS = 3
RETRY_INITIAL_BACKOFF = "0.2s"
RETRY_MAX_BACKOFF = "1s"
RECONNECT_MAX_BACKOFF_MS = 1000
RETRY_BUFFER_BYTES = MAX_MESSAGE_BYTES
"""How much of a request gRPC keeps to send it again on ``UNAVAILABLE``.

gRPC's default, 256 KiB, is less than one 299x299 image (262 KiB): a
larger request is never retried. Keeping the whole of any request we may
send makes the retry apply to every Predict call.
"""

_STATE_NAMES = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the model answered for a batch of images."""

    logits: np.ndarray
    probabilities: np.ndarray
    weights: list
    version: int


def _service_config(lb_policy):
    retry = {
        "maxAttempts": RETRY_ATTEMPTS,
        "initialBackoff": RETRY_INITIAL_BACKOFF,
        "maxBackoff": RETRY_MAX_BACKOFF,
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps(
        {
            "loadBalancingConfig": [{lb_policy: {}}],
            "methodConfig": [
                {
                    "name": [
                        {"service": "tensorflow.serving.PredictionService"},
                        {"service": "tensorflow.serving.ModelService"},
                    ],
                    "retryPolicy": retry,
                }
            ],
        }
    )


class ModelClient:
    """Calls one model on one model server."""

    def __init__(
        self,
        target,
        deadline_seconds,
        status_deadline_seconds,
        lb_policy="pick_first",
        model_name=contract.MODEL_NAME,
        max_concurrent_calls=4,
        max_waiting_calls=16,
    ):
        self.target = target
        self.deadline_seconds = deadline_seconds
        self.status_deadline_seconds = status_deadline_seconds
        self.lb_policy = lb_policy
        self.model_name = model_name
        self._lock = threading.Lock()
        self._pid = None
        self._channel = None
        self._methods = None
        self._limits = (max_concurrent_calls, max_waiting_calls)
        # Built here to check the limits early, and again in each worker.
        self._limiter = CallLimiter(*self._limits, RETRY_AFTER_SECONDS)

    @property
    def limiter(self):
        """The ``CallLimiter`` of this process's Predict calls."""
        return self._opened()[1]

    def _opened(self):
        """Returns the channel's methods and the call limiter of this process."""
        with self._lock:
            if self._pid != os.getpid():
                self._open()
        return self._methods, self._limiter

    def _open(self):
        # Runs in each worker after the fork; a channel inherited from the
        # parent would be unusable, so it is simply forgotten, not closed.
        messages = tfs_protos.messages()
        self._channel = grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.enable_retries", 1),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", RECONNECT_MAX_BACKOFF_MS),
                ("grpc.service_config", _service_config(self.lb_policy)),
                ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES),
            ],
        )
        specs = {
            "predict": (
                tfs_protos.PREDICT_METHOD,
                messages.PredictRequest,
                messages.PredictResponse,
            ),
            "metadata": (
                tfs_protos.GET_MODEL_METADATA_METHOD,
                messages.GetModelMetadataRequest,
                messages.GetModelMetadataResponse,
            ),
            "status": (
                tfs_protos.GET_MODEL_STATUS_METHOD,
                messages.GetModelStatusRequest,
                messages.GetModelStatusResponse,
            ),
        }
        self._methods = {
            name: self._channel.unary_unary(
                path,
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            for name, (path, request_class, response_class) in specs.items()
        }
        self._limiter = CallLimiter(*self._limits, RETRY_AFTER_SECONDS)
        self._pid = os.getpid()
        log.info("model server channel to %s (%s)", self.target, self.lb_policy)

    def predict(self, pixels):
        """Classifies a batch of images.

        Args:
            pixels: uint8 array ``[batch, 299, 299, 3]``.

        Returns:
            A ``Prediction``.

        Raises:
            ModelUnavailable: the model server is down or has no model, or
                this process already has as many calls waiting as allowed
                (``ModelBusy``).
            UpstreamTimeout: waiting for a call slot and the call took longer
                than the deadline.
            ApiError: the model server refused the request (a bug here).
        """
        request = tfs_protos.messages().PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = contract.SERVING_SIGNATURE
        request.inputs[contract.INPUT_IMAGES].CopyFrom(
            tfs_protos.make_tensor_proto(pixels)
        )
        _, limiter = self._opened()
        with limiter.slot(self.deadline_seconds) as waited:
            response = self._call("predict", request, self.deadline_seconds, waited)

        outputs = response.outputs
        try:
            return Prediction(
                logits=tfs_protos.tensor_to_numpy(outputs[contract.OUTPUT_LOGITS]),
                probabilities=tfs_protos.tensor_to_numpy(
                    outputs[contract.OUTPUT_PROBABILITIES]
                ),
                weights=[
                    value.decode()
                    for value in tfs_protos.tensor_to_numpy(
                        outputs[contract.OUTPUT_WEIGHTS]
                    )
                ],
                version=response.model_spec.version.value,
            )
        except (KeyError, TypeError, ValueError) as error:
            log.error("model answered outside the contract: %s", error)
            raise ApiError(
                "the model server answered outside the model contract"
            ) from error

    def status(self):
        """Returns ``[(version, state_name, error_message)]`` of the model."""
        request = tfs_protos.messages().GetModelStatusRequest()
        request.model_spec.name = self.model_name
        response = self._call("status", request, self.status_deadline_seconds)

        return [
            (
                entry.version,
                _STATE_NAMES.get(entry.state, str(entry.state)),
                entry.status.error_message,
            )
            for entry in response.model_version_status
        ]

    def signature_names(self):
        """Returns ``(version, names)`` of the newest version's signatures."""
        messages = tfs_protos.messages()
        request = messages.GetModelMetadataRequest()
        request.model_spec.name = self.model_name
        request.metadata_field.append("signature_def")
        response = self._call("metadata", request, self.status_deadline_seconds)

        signature_map = messages.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)

        return response.model_spec.version.value, sorted(signature_map.signature_def)

    def _call(self, method_name, request, deadline, waited=0.0):
        methods, _ = self._opened()
        try:
            return methods[method_name](request, timeout=deadline - waited)
        except grpc.RpcError as error:
            raise _translate(error, self.target, deadline) from error


def _translate(error, target, deadline):
    code = error.code()
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return UpstreamTimeout(f"the model server did not answer within {deadline:g} s")
    if code == grpc.StatusCode.UNAVAILABLE:
        log.warning("model server %s unavailable: %s", target, error.details())
        return ModelUnavailable(
            "the model server is unavailable; try again shortly", headers=retry
        )
    if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED):
        log.warning("model server %s: %s %s", target, code.name, error.details())
        return ModelUnavailable(
            "the model is not loaded yet or the server is busy; try again shortly",
            headers=retry,
        )

    log.error("model server %s answered %s: %s", target, code.name, error.details())
    return ApiError("the model server failed to answer")
