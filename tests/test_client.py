"""``python -m serving.client`` from the gateway's environment (no TensorFlow)."""

import re
import subprocess

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from deepclassify import contract, labels
from gateway.imaging import decode_image
from tools import stack

pytestmark = pytest.mark.e2e

LINE = re.compile(r"^  (\d)\. (\d\.\d{6})  (.+) \(class (\d+)\)$")


def run_client(*args):
    return subprocess.run(
        [str(stack.GATEWAY_BIN / "python"), "-m", "serving.client", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=stack.ROOT,
        timeout=120,
    )


def parse_output(stdout):
    """``{header: [(class id, label, score)]}`` from the client's output."""
    answers = {}
    header = None
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            rank, score, name, index = match.groups()
            answers[header].append((int(index), name, float(score)))
            assert int(rank) == len(answers[header])
        else:
            header = line
            answers[header] = []
    return answers


def predict(model_server, request):
    with grpc.insecure_channel(model_server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=120)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def expected_classify_images(model_server, files):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = contract.CLASSIFY_SIGNATURE
    request.inputs[contract.INPUT_IMAGE_BYTES].CopyFrom(
        tf.make_tensor_proto(files, dtype=tf.string, shape=[len(files)])
    )
    outputs = predict(model_server, request)
    return [
        [
            (int(index), name.decode(), float(score))
            for index, name, score in zip(*rows, strict=True)
        ]
        for rows in zip(
            outputs["classes"], outputs["labels"], outputs["scores"], strict=True
        )
    ]


def expected_serving_default(model_server, files):
    pixels = np.stack([decode_image(data, 10**8).pixels for data in files])
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.inputs[contract.INPUT_IMAGES].CopyFrom(tf.make_tensor_proto(pixels))
    probabilities = predict(model_server, request)["probabilities"]
    names = labels.class_names()
    return [
        [
            (int(index), names[index], float(row[index]))
            for index in np.argsort(-row, kind="stable")[:5]
        ]
        for row in probabilities
    ]


@pytest.mark.parametrize("signature", ["classify_images", "serving_default"])
def test_client_prints_the_top_five_of_each_image(model_server, photos, signature):
    paths = [photos["chelsea.png"], photos["rocket.jpg"]]
    files = [path.read_bytes() for path in paths]
    expected = {
        "classify_images": expected_classify_images,
        "serving_default": expected_serving_default,
    }[signature](model_server, files)

    result = run_client(*paths, "--server", model_server, "--signature", signature)

    assert result.returncode == 0, result.stderr
    answers = parse_output(result.stdout)
    assert list(answers) == [
        f"{path}: inception_v3 version 1 (weights: random)" for path in paths
    ]
    for printed, wanted in zip(answers.values(), expected, strict=True):
        assert [entry[:2] for entry in printed] == [entry[:2] for entry in wanted]
        np.testing.assert_allclose(
            [entry[2] for entry in printed], [entry[2] for entry in wanted], atol=2e-6
        )


def test_client_reports_an_undecodable_file(model_server, tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not a photo")

    sent = run_client(path, "--server", model_server)
    decoded_here = run_client(
        path, "--server", model_server, "--signature", "serving_default"
    )

    assert sent.returncode == 1
    assert sent.stderr == (
        f"error: the model server at {model_server} answered INVALID_ARGUMENT: "
        "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP "
        "required.\n"
    )
    assert decoded_here.returncode == 2
    assert decoded_here.stderr == (
        f"error: {path}: expected a JPEG, PNG, GIF, WebP, BMP or TIFF image; "
        "received plain text\n"
    )


def test_client_reports_a_missing_file(tmp_path):
    result = run_client(tmp_path / "absent.png", "--server", "127.0.0.1:1")

    assert result.returncode == 2
    assert result.stderr == (
        f"error: cannot read {tmp_path / 'absent.png'}: No such file or directory\n"
    )
    assert result.stdout == ""
