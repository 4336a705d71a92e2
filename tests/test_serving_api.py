"""The local model server through TensorFlow Serving's official stubs.

Both signatures, their metadata, bad files, large photos, the message
limit, and batching of concurrent calls, against the session's model
server (batching on, as under ``make run``).
"""

import io

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from deepclassify import contract, labels
from tests.conftest import PHOTO_NAMES, logits_match, reference_pixels

pytestmark = pytest.mark.e2e

UNLIMITED = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]


@pytest.fixture(scope="module")
def stub(model_server):
    channel = grpc.insecure_channel(model_server, options=UNLIMITED)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def classify_request(files):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = contract.CLASSIFY_SIGNATURE
    request.inputs[contract.INPUT_IMAGE_BYTES].CopyFrom(
        tf.make_tensor_proto(files, dtype=tf.string, shape=[len(files)])
    )
    return request


def pixels_request(pixels):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.inputs[contract.INPUT_IMAGES].CopyFrom(tf.make_tensor_proto(pixels))
    return request


def outputs_of(response):
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def test_metadata_lists_both_signatures(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.metadata_field.append("signature_def")

    response = stub.GetModelMetadata(request, timeout=30)

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    shapes = {
        name: {
            side: {
                key: (
                    tf.dtypes.as_dtype(info.dtype).name,
                    [dim.size for dim in info.tensor_shape.dim],
                )
                for key, info in getattr(signature, side).items()
            }
            for side in ("inputs", "outputs")
        }
        for name, signature in signature_map.signature_def.items()
        if not name.startswith("__")
    }
    assert shapes == {
        "serving_default": {
            "inputs": {"images": ("uint8", [-1, 299, 299, 3])},
            "outputs": {
                "logits": ("float32", [-1, 1000]),
                "probabilities": ("float32", [-1, 1000]),
                "weights": ("string", [-1]),
            },
        },
        "classify_images": {
            "inputs": {"image_bytes": ("string", [-1])},
            "outputs": {
                "classes": ("int32", [-1, 5]),
                "labels": ("string", [-1, 5]),
                "scores": ("float32", [-1, 5]),
                "logits": ("float32", [-1, 1000]),
                "weights": ("string", [-1]),
            },
        },
    }


def test_classify_images_answers_named_top_five(stub, photos):
    files = [photos[name].read_bytes() for name in PHOTO_NAMES]

    response = stub.Predict(classify_request(files), timeout=60)

    outputs = outputs_of(response)
    assert response.model_spec.signature_name == "classify_images"
    assert outputs["logits"].shape == (len(files), 1000)
    probabilities = tf.nn.softmax(outputs["logits"]).numpy()
    names = labels.class_names()
    for row in range(len(files)):
        expected = np.argsort(-outputs["logits"][row], kind="stable")[:5]
        np.testing.assert_array_equal(outputs["classes"][row], expected)
        assert [value.decode() for value in outputs["labels"][row]] == [
            names[index] for index in expected
        ]
        np.testing.assert_allclose(
            outputs["scores"][row], probabilities[row][expected], rtol=1e-5
        )
    assert outputs["weights"].tolist() == [b"random"] * len(files)


@pytest.mark.parametrize(
    "bad_file",
    [b"this is not an image", "truncated-png", "truncated-jpeg"],
    ids=["text", "truncated-png", "truncated-jpeg"],
)
def test_undecodable_file_is_invalid_argument(stub, photos, bad_file):
    if bad_file == "truncated-png":
        bad_file = photos["chelsea.png"].read_bytes()[:5000]
    elif bad_file == "truncated-jpeg":
        bad_file = photos["rocket.jpg"].read_bytes()[:5000]
    good = photos["coffee.png"].read_bytes()

    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(classify_request([good, bad_file]), timeout=60)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details()
    response = stub.Predict(classify_request([good]), timeout=60)
    assert outputs_of(response)["classes"].shape == (1, 5)


def test_a_bad_file_fails_only_its_own_call_in_a_batch(stub, photos):
    files = [photos[name].read_bytes() for name in PHOTO_NAMES]
    calls = [[data] for data in files] + [[b"GIF89a broken"]]

    futures = [
        stub.Predict.future(classify_request(call), timeout=60) for call in calls
    ]
    outcomes = [future.exception() or future.result() for future in futures]

    assert outcomes[-1].code() == grpc.StatusCode.INVALID_ARGUMENT
    for outcome in outcomes[:-1]:
        assert outputs_of(outcome)["classes"].shape == (1, 5)


def upscaled_jpeg(path, size):
    with Image.open(path) as image:
        big = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_3000_pixel_photo_is_classified(stub, photos, keras_model, tmp_path):
    from tests.conftest import keras_logits

    data = upscaled_jpeg(photos["chelsea.png"], 3000)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    assert len(data) < contract.GRPC_MAX_MESSAGE_BYTES

    response = stub.Predict(classify_request([data]), timeout=120)

    served = outputs_of(response)["logits"][0]
    reference = keras_logits(keras_model, reference_pixels(path))
    ok, worst = logits_match(served, reference, tolerance=5e-2)
    assert ok, f"logits differ by {worst:.2e} x spread"


def test_a_message_over_the_limit_is_resource_exhausted(stub, photos):
    too_big = b"\0" * (contract.GRPC_MAX_MESSAGE_BYTES + 1)

    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(classify_request([too_big]), timeout=60)

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in raised.value.details()
    response = stub.Predict(classify_request([photos["coffee.png"].read_bytes()]))
    assert outputs_of(response)["classes"].shape == (1, 5)


def distinct_inputs(photos, count):
    """``count`` different 299x299 images: real photos, flipped and rolled."""
    images = []
    for index in range(count):
        pixels = reference_pixels(photos[PHOTO_NAMES[index % len(PHOTO_NAMES)]])
        variant = index // len(PHOTO_NAMES)
        if variant % 2:
            pixels = pixels[:, ::-1]
        images.append(np.ascontiguousarray(np.roll(pixels, 37 * variant, axis=0)))
    return images


def batch_lines(log_path, start):
    """The batcher's log lines written after byte ``start``."""
    with log_path.open("rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines() if "serving.batching: batch:" in line]


def test_concurrent_calls_are_batched_and_answered_each_its_own(
    stub, photos, model_server_log
):
    images = distinct_inputs(photos, 32)
    alone = [
        outputs_of(stub.Predict(pixels_request(image[np.newaxis]), timeout=60))
        for image in images
    ]
    start = model_server_log.stat().st_size

    futures = [
        stub.Predict.future(pixels_request(image[np.newaxis]), timeout=120)
        for image in images
    ]
    together = [outputs_of(future.result()) for future in futures]

    lines = batch_lines(model_server_log, start)
    calls = sum(int(line.split("batch: ")[1].split(" calls")[0]) for line in lines)
    assert calls == len(images)
    assert len(lines) < len(images)
    for single, batched in zip(alone, together, strict=True):
        ok, worst = logits_match(batched["logits"][0], single["logits"][0])
        assert ok, f"a batched answer differs from its own by {worst:.2e} x spread"
    # The images differ enough that a mix-up would show.
    for index, single in enumerate(alone):
        other = alone[(index + 1) % len(alone)]
        assert not logits_match(other["logits"][0], single["logits"][0])[0]
