"""``classify_images`` preprocesses in the graph as the gateway does with Pillow.

TensorFlow's and Pillow's decoders and bilinear filters are close, not
equal (``export/preprocessing.py`` explains why they match), so the
pixels and the logits are compared within stated tolerances on real
photos.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from deepclassify import contract
from export import preprocessing
from gateway.imaging import decode_image
from tests.conftest import PHOTO_NAMES, keras_logits, logits_match

MAX_MEAN_PIXEL_DIFFERENCE = 1.5
"""Levels (of 255), averaged over the 299x299x3 values."""
MAX_LOGIT_DIFFERENCE = 5e-2
"""Times the spread of the reference logits."""

EXTRA_PHOTOS = ("motorcycle_left.png", "astronaut.png")


@pytest.fixture(scope="module")
def photo_paths(photo_dir):
    return {name: photo_dir / name for name in (*PHOTO_NAMES, *EXTRA_PHOTOS)}


@pytest.mark.parametrize("name", [*PHOTO_NAMES, *EXTRA_PHOTOS])
def test_graph_pixels_match_the_gateway(photo_paths, name):
    data = photo_paths[name].read_bytes()

    in_graph = preprocessing.decode_and_resize(tf.constant(data)).numpy()
    gateway = decode_image(data, max_pixels=10**8).pixels

    assert in_graph.dtype == np.uint8
    assert in_graph.shape == gateway.shape == (299, 299, 3)
    difference = np.abs(in_graph.astype(float) - gateway.astype(float)).mean()
    assert difference <= MAX_MEAN_PIXEL_DIFFERENCE, f"{difference:.2f} levels"


@pytest.mark.e2e
def test_served_logits_match_keras_on_gateway_pixels(
    model_server, photo_paths, keras_model
):
    names = list(photo_paths)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = contract.CLASSIFY_SIGNATURE
    files = [photo_paths[name].read_bytes() for name in names]
    request.inputs[contract.INPUT_IMAGE_BYTES].CopyFrom(
        tf.make_tensor_proto(files, dtype=tf.string, shape=[len(files)])
    )
    with grpc.insecure_channel(model_server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request, timeout=120)

    served = tf.make_ndarray(response.outputs[contract.OUTPUT_LOGITS])
    for row, (name, data) in enumerate(zip(names, files, strict=True)):
        reference = keras_logits(
            keras_model, decode_image(data, max_pixels=10**8).pixels
        )
        ok, worst = logits_match(served[row], reference, MAX_LOGIT_DIFFERENCE)
        assert ok, f"{name}: logits differ by {worst:.2e} x spread"
