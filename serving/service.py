"""The gRPC services of the local model server.

``PredictionService.Predict`` and ``GetModelMetadata``, and
``ModelService.GetModelStatus``, with the official ``tensorflow-serving-api``
messages and the status codes TensorFlow Serving answers with, so a client
cannot tell the two servers apart for these calls. Predict runs the model
through a runner: ``DirectRunner`` (each call on its own) or, with
``--enable_batching``, ``serving.batching.Batcher``.
"""

import logging
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ServableNotFound,
    ServingError,
)
from serving.model_store import DEFAULT_SIGNATURE

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
NO_DEADLINE_SECONDS = 24 * 3600.0
"""A call with more time left than this is treated as having no deadline."""


def _handle(method):
    """Runs a handler, turning our errors into the call's status."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.code, error.message)
        except tf.errors.InvalidArgumentError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _op_error_message(error))
        except tf.errors.ResourceExhaustedError as error:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, _op_error_message(error))

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__

    return wrapper


_GRAPH_BOILERPLATE = ("Graph execution error", "Detected at node", "<stack", "[[")


def _op_error_message(error):
    """The message of a TensorFlow op error without the graph's boilerplate.

    ``Graph execution error: ... Unknown image file format ... [[{{node
    ...}}]]`` becomes ``Unknown image file format ...``.
    """
    lines = [line.strip() for line in error.message.splitlines()]
    useful = [
        line for line in lines if line and not line.startswith(_GRAPH_BOILERPLATE)
    ]

    return useful[-1] if useful else error.message


class Models:
    """The configured models by name."""

    def __init__(self, stores):
        self.stores = {store.name: store for store in stores}

    def update(self, configs, make_store):
        """Applies a re-read ``models.config``.

        Models still listed take their new policy, labels and base path;
        new ones get a store from ``make_store(config)``; models no longer
        listed are unloaded and forgotten.
        """
        stores = {}
        for config in configs:
            store = self.stores.get(config.name)
            if store is None:
                store = make_store(config)
            else:
                store.reconfigure(config)
            stores[config.name] = store
        for name, store in self.stores.items():
            if name not in stores:
                store.unload_all()
        # One assignment: calls in flight see the old or the new set.
        self.stores = stores

    def store_for(self, model_spec):
        if not model_spec.name:
            raise InvalidArgument("Missing ModelSpec")
        if model_spec.name not in self.stores:
            raise ServableNotFound(
                f"Servable not found for request: Latest({model_spec.name})"
            )
        return self.stores[model_spec.name]


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over the loaded versions."""

    def __init__(self, models, runner):
        self.models = models
        self.runner = runner

    @_handle
    def Predict(self, request, context):
        """Runs one signature on the request's input tensors."""
        store = self.models.store_for(request.model_spec)
        version = store.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name not in version.signatures:
            raise InvalidArgument(
                f'Serving signature key "{signature_name}" not found.',
            )
        signature_def = version.signature_defs[signature_name]
        inputs = _decode_inputs(request, signature_def)
        output_names = _output_names(request, signature_def)

        remaining = context.time_remaining()
        if remaining is not None and remaining > NO_DEADLINE_SECONDS:
            remaining = None  # gRPC reports "no deadline" as a huge number.
        if remaining is not None and remaining <= 0:
            raise DeadlineExceeded("Deadline exceeded")
        outputs = self.runner.run(
            version, signature_name, inputs, output_names, deadline_seconds=remaining
        )

        response = predict_pb2.PredictResponse()
        response.model_spec.name = store.name
        response.model_spec.version.value = version.version
        response.model_spec.signature_name = signature_name
        for name in output_names:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))

        return response

    @_handle
    def GetModelMetadata(self, request, context):
        """Answers the signature definitions of the requested version."""
        fields = list(request.metadata_field)
        if fields != [SIGNATURE_DEF_FIELD]:
            raise InvalidArgument(
                f"Metadata field {', '.join(fields) or '(none)'} is not supported",
            )
        store = self.models.store_for(request.model_spec)
        version = store.resolve(request.model_spec)

        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature_def in version.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = store.name
        response.model_spec.version.value = version.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)

        return response


def _decode_inputs(request, signature_def):
    expected = set(signature_def.inputs)
    received = set(request.inputs)
    if expected != received:
        raise InvalidArgument(
            f"input size does not match signature: {len(received)}!={len(expected)} "
            f"len({{{', '.join(sorted(received))}}}) != "
            f"len({{{', '.join(sorted(expected))}}})",
        )

    inputs = {}
    for key, proto in request.inputs.items():
        tensor_info = signature_def.inputs[key]
        if proto.dtype != tensor_info.dtype:
            expected_name = tf.dtypes.as_dtype(tensor_info.dtype).name
            received_name = tf.dtypes.as_dtype(proto.dtype).name
            raise InvalidArgument(
                f"Expects arg[{key}] to be {expected_name} "
                f"but {received_name} is provided",
            )
        try:
            inputs[key] = tf.make_ndarray(proto)
        except (TypeError, ValueError) as error:
            raise InvalidArgument(f"input {key!r}: {error}") from error

    return inputs


def _output_names(request, signature_def):
    if not request.output_filter:
        return list(signature_def.outputs)

    names = []
    for name in request.output_filter:
        if name not in signature_def.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {name}",
            )
        if name in names:
            raise InvalidArgument(
                f"duplicate output tensor alias: {name}",
            )
        names.append(name)

    return names


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus: the state of each known version."""

    def __init__(self, models):
        self.models = models

    @_handle
    def GetModelStatus(self, request, context):
        """Lists the versions of a model with their states."""
        store = self.models.store_for(request.model_spec)
        choice = request.model_spec.WhichOneof("version_choice")
        wanted = None
        if choice == "version":
            wanted = request.model_spec.version.value
        elif choice == "version_label":
            wanted = store.resolve(request.model_spec).version

        statuses = store.statuses(wanted)
        if not statuses:
            raise ServableNotFound(f"Could not find any versions of model {store.name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, state, error in statuses:
            entry = response.model_version_status.add(version=number, state=state)
            if error:
                entry.status.error_code = 3  # INVALID_ARGUMENT, as TF Serving
                entry.status.error_message = error

        return response


class DirectRunner:
    """Runs each call on its own, on the calling gRPC thread (no batching)."""

    def run(self, version, signature_name, inputs, output_names, deadline_seconds):
        """Runs the signature; the arguments are those of ``Batcher.run``."""
        started = time.monotonic()
        outputs = version.run(signature_name, inputs)
        log.debug(
            "ran %s on %s in %.1f ms",
            signature_name,
            {key: value.shape for key, value in inputs.items()},
            (time.monotonic() - started) * 1000,
        )

        return {name: outputs[name] for name in output_names}

    def stop(self):
        """Nothing to stop; here to match ``Batcher``."""
