"""TensorFlow Serving's gRPC messages and methods, without TensorFlow.

``tensorflow-serving-api`` imports all of TensorFlow (seconds, hundreds of
megabytes) just to define a few protobuf messages. The build extracts the
descriptors of those messages from the official package into
``tfs_api.binpb`` (see ``scripts/extract_protos.py``); this module turns
them into message classes with ``google.protobuf`` alone. The classes are
wire-identical to the official ones, so the servers cannot tell the
difference.

It also converts between NumPy arrays and ``TensorProto`` in both of the
encodings TensorFlow Serving uses (``tensor_content`` and the typed
``*_val`` fields).
"""

import functools
import pathlib
import types

import numpy as np
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorSet

DESCRIPTOR_SET_PATH = pathlib.Path(__file__).with_name("tfs_api.binpb")

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA_METHOD = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_MODEL_STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"

_MESSAGE_NAMES = {
    "PredictRequest": "tensorflow.serving.PredictRequest",
    "PredictResponse": "tensorflow.serving.PredictResponse",
    "GetModelMetadataRequest": "tensorflow.serving.GetModelMetadataRequest",
    "GetModelMetadataResponse": "tensorflow.serving.GetModelMetadataResponse",
    "SignatureDefMap": "tensorflow.serving.SignatureDefMap",
    "GetModelStatusRequest": "tensorflow.serving.GetModelStatusRequest",
    "GetModelStatusResponse": "tensorflow.serving.GetModelStatusResponse",
    "ModelVersionStatus": "tensorflow.serving.ModelVersionStatus",
    "PredictionLog": "tensorflow.serving.PredictionLog",
    "TensorProto": "tensorflow.TensorProto",
}

# TensorFlow's DataType enum values (tensorflow/core/framework/types.proto),
# with the NumPy dtype and the typed field each is carried in.
DT_FLOAT = 1
DT_INT32 = 3
DT_UINT8 = 4
DT_STRING = 7
DT_INT64 = 9

_DTYPES = {
    DT_FLOAT: (np.float32, "float_val"),
    DT_INT32: (np.int32, "int_val"),
    DT_UINT8: (np.uint8, "int_val"),
    DT_INT64: (np.int64, "int64_val"),
}


@functools.cache
def messages():
    """Builds the message classes once per process.

    Returns:
        A namespace with one attribute per message, named as in
        ``tensorflow_serving.apis`` (``PredictRequest``, ``TensorProto``...).
    """
    descriptor_set = FileDescriptorSet.FromString(DESCRIPTOR_SET_PATH.read_bytes())
    # A private pool: in a process that also loaded TensorFlow (tests), the
    # official classes live in the default pool and must not collide.
    classes = message_factory.GetMessages(
        list(descriptor_set.file), pool=descriptor_pool.DescriptorPool()
    )

    return types.SimpleNamespace(
        **{short: classes[full] for short, full in _MESSAGE_NAMES.items()}
    )


def make_tensor_proto(array):
    """Encodes a NumPy array as a ``TensorProto``.

    Args:
        array: a NumPy array of uint8, int32, int64 or float32, or a
            sequence of ``bytes`` for a string tensor.

    Returns:
        The ``TensorProto``; numeric data goes in ``tensor_content``, the
        compact form TensorFlow Serving reads fastest.

    Raises:
        TypeError: for a dtype outside those above.
    """
    proto = messages().TensorProto()
    if not isinstance(array, np.ndarray) or array.dtype.kind in "OSU":
        values = np.asarray(array, dtype=object)
        proto.dtype = DT_STRING
        proto.tensor_shape.dim.extend(_dims(values.shape))
        proto.string_val.extend(bytes(value) for value in values.reshape(-1))
        return proto

    for enum, (dtype, _) in _DTYPES.items():
        if array.dtype == dtype:
            proto.dtype = enum
            break
    else:
        raise TypeError(f"cannot encode a {array.dtype} array as a TensorProto")

    proto.tensor_shape.dim.extend(_dims(array.shape))
    proto.tensor_content = np.ascontiguousarray(array).tobytes()

    return proto


def _dims(shape):
    dim_class = messages().TensorProto().tensor_shape.Dim
    return [dim_class(size=size) for size in shape]


def tensor_to_numpy(proto):
    """Decodes a ``TensorProto`` in either encoding.

    Args:
        proto: a ``TensorProto`` from a response.

    Returns:
        A NumPy array of the proto's shape; a string tensor becomes an
        object array of ``bytes``.

    Raises:
        TypeError: for a dtype this module does not decode.
    """
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if proto.dtype == DT_STRING:
        values = np.empty(len(proto.string_val), dtype=object)
        values[:] = list(proto.string_val)
        return values.reshape(shape)

    if proto.dtype not in _DTYPES:
        raise TypeError(f"cannot decode TensorProto dtype {proto.dtype}")
    dtype, field = _DTYPES[proto.dtype]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)

    values = np.asarray(getattr(proto, field), dtype=dtype)
    count = int(np.prod(shape))
    if values.size == 1 and count > 1:
        # TensorFlow may send a tensor whose elements are all equal as one.
        values = np.full(count, values[0], dtype=dtype)

    return values.reshape(shape)
