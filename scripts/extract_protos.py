"""Write the TensorFlow Serving API descriptors as one FileDescriptorSet.

Run in the TensorFlow environment (it imports ``tensorflow_serving.apis``).
The result, ``deepclassify/tfs_api.binpb``, lets processes without
TensorFlow (the gateway, the command-line client) build the very same
message classes with ``google.protobuf`` alone; see
``deepclassify/tfs_protos.py``.

Usage: ``python scripts/extract_protos.py [OUTPUT]``; with ``--check`` it
exits 1 when the committed file differs from what the installed
``tensorflow-serving-api`` describes.
"""

import argparse
import pathlib
import sys

from google.protobuf import descriptor_pb2

DEFAULT_OUTPUT = (
    pathlib.Path(__file__).resolve().parent.parent / "deepclassify" / "tfs_api.binpb"
)


def _api_file_descriptors():
    """Returns the file descriptors of every API message we use."""
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2,
        predict_pb2,
        prediction_log_pb2,
        prediction_service_pb2,
    )

    return [
        module.DESCRIPTOR
        for module in (
            predict_pb2,
            get_model_metadata_pb2,
            get_model_status_pb2,
            prediction_log_pb2,
            prediction_service_pb2,
            model_service_pb2,
        )
    ]


def build_descriptor_set():
    """Collects the API files and all they import, dependencies first.

    Returns:
        The serialized ``FileDescriptorSet``, byte-for-byte stable for a
        given ``tensorflow-serving-api`` release.
    """
    ordered = []
    seen = set()

    def visit(file_descriptor):
        if file_descriptor.name in seen:
            return
        seen.add(file_descriptor.name)
        for dependency in file_descriptor.dependencies:
            visit(dependency)
        ordered.append(file_descriptor)

    for file_descriptor in _api_file_descriptors():
        visit(file_descriptor)

    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for file_descriptor in ordered:
        file_descriptor.CopyToProto(descriptor_set.file.add())

    return descriptor_set.SerializeToString(deterministic=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=pathlib.Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="compare instead of writing"
    )
    args = parser.parse_args(argv)

    data = build_descriptor_set()
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(
                f"{args.output} is stale; run scripts/extract_protos.py",
                file=sys.stderr,
            )
            return 1
        return 0

    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")

    return 0


if __name__ == "__main__":
    sys.exit(main())
