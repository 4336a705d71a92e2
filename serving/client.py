"""Classifies image files over gRPC: ``python -m serving.client IMAGE...``.

A direct client of the model server (TensorFlow Serving or the local one)
that runs in the gateway's environment: grpcio and the message classes of
``deepclassify.tfs_protos``, no TensorFlow. It prints the top-5 classes of
each image.

With ``--signature classify_images`` (the default) it sends the files as
they are and the graph decodes, resizes and names the classes. With
``--signature serving_default`` it decodes and resizes each file itself,
exactly as the gateway does (``gateway.imaging``), sends the pixels, and
names the classes from ``deepclassify.labels``.

Exit status: 0 when every image was classified, 1 when the model server
refused or failed the call, 2 when a file cannot be read or decoded.
"""

import argparse
import pathlib
import sys

import grpc
import numpy as np

from deepclassify import contract, labels, tfs_protos

DEFAULT_SERVER = "127.0.0.1:8500"
DEFAULT_TIMEOUT_SECONDS = 30.0
"""Deadline of the Predict call; the server drops the call once it passes."""
SIGNATURES = (contract.CLASSIFY_SIGNATURE, contract.SERVING_SIGNATURE)


class ClientError(Exception):
    """A problem the user can act on; ``status`` is the exit status."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Print the top 5 ImageNet classes of each image, asking the "
        "model server over gRPC.",
    )
    parser.add_argument("images", nargs="+", type=pathlib.Path, metavar="IMAGE")
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help=f"the model server's HOST:PORT (default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--signature",
        choices=SIGNATURES,
        default=contract.CLASSIFY_SIGNATURE,
        help="send the files (classify_images, default) or pixels decoded here "
        "(serving_default)",
    )
    parser.add_argument(
        "--model", default=contract.MODEL_NAME, help="the model's name in models.config"
    )
    version = parser.add_mutually_exclusive_group()
    version.add_argument("--version", type=int, help="a version number")
    version.add_argument("--version-label", help="a version label, such as stable")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"seconds the call may take (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )

    return parser.parse_args(argv)


def build_request(args, files):
    """Builds the ``PredictRequest`` for the files, in the given signature.

    Raises:
        ClientError: a file cannot be decoded (``serving_default``), or the
            request would exceed the message size limit.
    """
    request = tfs_protos.messages().PredictRequest()
    request.model_spec.name = args.model
    request.model_spec.signature_name = args.signature
    if args.version is not None:
        request.model_spec.version.value = args.version
    elif args.version_label:
        request.model_spec.version_label = args.version_label

    if args.signature == contract.CLASSIFY_SIGNATURE:
        tensor = tfs_protos.make_tensor_proto(list(files.values()))
        request.inputs[contract.INPUT_IMAGE_BYTES].CopyFrom(tensor)
    else:
        pixels = np.stack([_pixels(path, data) for path, data in files.items()])
        request.inputs[contract.INPUT_IMAGES].CopyFrom(
            tfs_protos.make_tensor_proto(pixels)
        )

    size = request.ByteSize()
    if size > contract.GRPC_MAX_MESSAGE_BYTES:
        raise ClientError(
            f"the request is {size:,} bytes, over the message limit of "
            f"{contract.GRPC_MAX_MESSAGE_BYTES:,}; send fewer or smaller images",
            status=2,
        )

    return request


def _pixels(path, data):
    # Imported here: only serving_default needs the gateway's decoder.
    from gateway.config import DEFAULTS
    from gateway.errors import ApiError
    from gateway.imaging import decode_image

    try:
        return decode_image(data, DEFAULTS["MAX_IMAGE_PIXELS"]).pixels
    except ApiError as error:
        raise ClientError(f"{path}: {error.detail}", status=2) from error


def predict(server, request, timeout):
    """Sends one Predict call.

    Raises:
        ClientError: the call failed; the message has the gRPC status.
    """
    messages = tfs_protos.messages()
    with grpc.insecure_channel(
        server,
        options=[
            ("grpc.max_send_message_length", contract.GRPC_MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", contract.GRPC_MAX_MESSAGE_BYTES),
        ],
    ) as channel:
        method = channel.unary_unary(
            tfs_protos.PREDICT_METHOD,
            request_serializer=messages.PredictRequest.SerializeToString,
            response_deserializer=messages.PredictResponse.FromString,
        )
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as error:
            raise ClientError(
                f"the model server at {server} answered {error.code().name}: "
                f"{error.details()}",
                status=1,
            ) from error


def top_classes(signature, response):
    """Returns ``[[(class id, label, score), ...] per image]``, best first."""
    outputs = response.outputs
    if signature == contract.CLASSIFY_SIGNATURE:
        classes = tfs_protos.tensor_to_numpy(outputs[contract.OUTPUT_CLASSES])
        names = tfs_protos.tensor_to_numpy(outputs[contract.OUTPUT_LABELS])
        scores = tfs_protos.tensor_to_numpy(outputs[contract.OUTPUT_SCORES])
        return [
            [
                (int(index), name.decode(), float(score))
                for index, name, score in zip(
                    row_classes, row_names, row_scores, strict=True
                )
            ]
            for row_classes, row_names, row_scores in zip(
                classes, names, scores, strict=True
            )
        ]

    probabilities = tfs_protos.tensor_to_numpy(outputs[contract.OUTPUT_PROBABILITIES])
    names = labels.class_names()
    answers = []
    for row in probabilities:
        best = np.argsort(-row, kind="stable")[: contract.TOP_K]
        answers.append(
            [(int(index), names[index], float(row[index])) for index in best]
        )

    return answers


def format_answer(path, classes, response, weights):
    """Formats one image's top classes for the terminal."""
    lines = [
        f"{path}: {response.model_spec.name} version "
        f"{response.model_spec.version.value} (weights: {weights})"
    ]
    for rank, (index, name, score) in enumerate(classes, start=1):
        lines.append(f"  {rank}. {score:.6f}  {name} (class {index})")

    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)

    try:
        files = {path: _read(path) for path in args.images}
        request = build_request(args, files)
        response = predict(args.server, request, args.timeout)
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.status

    answers = top_classes(args.signature, response)
    weights = tfs_protos.tensor_to_numpy(response.outputs[contract.OUTPUT_WEIGHTS])
    for path, classes, origin in zip(files, answers, weights, strict=True):
        print(format_answer(path, classes, response, origin.decode()))

    return 0


def _read(path):
    try:
        return path.read_bytes()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror}", status=2) from error


if __name__ == "__main__":
    sys.exit(main())
