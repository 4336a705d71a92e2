"""TensorFlow Serving's batching and monitoring config messages.

``tensorflow_model_server`` reads ``--batching_parameters_file`` as a text
``BatchingParameters`` (from ``session_bundle_config.proto``) and
``--monitoring_config_file`` as a text ``MonitoringConfig``. Neither message
ships in the ``tensorflow-serving-api`` package, so they are declared here
with the field names, numbers and types of TensorFlow Serving's own
``.proto`` files, which is all the text format depends on.
"""

import functools

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    wrappers_pb2,
)

_PACKAGE = "tensorflow.serving"
_Field = descriptor_pb2.FieldDescriptorProto

# (name, number, type, label, message type) as in session_bundle_config.proto.
_BATCHING_FIELDS = (
    ("max_batch_size", 1, _Field.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, _Field.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, _Field.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, _Field.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, _Field.TYPE_MESSAGE, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, _Field.TYPE_INT64, None),
    ("pad_variable_length_inputs", 7, _Field.TYPE_BOOL, None),
)


def _file_proto():
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="deepclassify/tensorflow_serving_server_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )

    batching = file_proto.message_type.add(name="BatchingParameters")
    for name, number, field_type, type_name in _BATCHING_FIELDS:
        field = batching.field.add(name=name, number=number, type=field_type)
        repeated = name == "allowed_batch_sizes"
        field.label = _Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL
        if type_name:
            field.type_name = type_name

    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(
        name="enable", number=1, type=_Field.TYPE_BOOL, label=_Field.LABEL_OPTIONAL
    )
    prometheus.field.add(
        name="path", number=2, type=_Field.TYPE_STRING, label=_Field.LABEL_OPTIONAL
    )

    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=_Field.TYPE_MESSAGE,
        label=_Field.LABEL_OPTIONAL,
        type_name=f".{_PACKAGE}.PrometheusConfig",
    )

    return file_proto


@functools.cache
def message_classes():
    """Returns ``(BatchingParameters, MonitoringConfig)`` message classes."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    classes = message_factory.GetMessages([wrappers, _file_proto()], pool=pool)

    return (
        classes[f"{_PACKAGE}.BatchingParameters"],
        classes[f"{_PACKAGE}.MonitoringConfig"],
    )
