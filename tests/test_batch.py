"""Batches and the answer cache, against the real model server.

The app is built in-process from a test config and talks to the session's
model server over gRPC; its model client is wrapped to count the Predict
calls and record their batch shapes, and otherwise left alone.
"""

import hashlib
import io

import numpy as np
import pytest
import requests

from gateway import create_app
from tests.conftest import keras_logits, logits_match, reference_pixels, top_ids_match

pytestmark = pytest.mark.e2e

ACCEPTED = "expected a JPEG, PNG, GIF, WebP, BMP or TIFF image"


class CountingClient:
    """The real model client, with a record of each Predict batch shape."""

    def __init__(self, client):
        self.client = client
        self.shapes = []

    def predict(self, pixels):
        self.shapes.append(pixels.shape)
        return self.client.predict(pixels)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def app(model_server):
    app = create_app(
        {"MODEL_SERVER": model_server, "FETCH_ALLOW_NETWORKS": "127.0.0.0/8"}
    )
    app.extensions["model_client"] = CountingClient(app.extensions["model_client"])
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def references(photos, keras_model):
    return {
        name: keras_logits(keras_model, reference_pixels(path))
        for name, path in photos.items()
    }


def assert_matches(result, reference):
    ids = [p["class_id"] for p in result["predictions"]]
    ok, ranks = top_ids_match(ids, reference)
    assert ok, f"served ranking disagrees with Keras at ranks {ranks}"
    served = np.array([p["logit"] for p in result["predictions"]])
    ok, worst = logits_match(served, reference[ids])
    assert ok, f"logits differ by {worst:.2e} x spread"


def problem(status, title, slug, detail):
    return {
        "type": f"https://deepclassify.dev/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }


def test_uploads_are_answered_in_order_in_one_predict_call(
    app, client, photos, references
):
    chelsea = photos["chelsea.png"].read_bytes()
    rocket = photos["rocket.jpg"].read_bytes()
    images = [
        (io.BytesIO(chelsea), "chelsea.png"),
        (io.BytesIO(b"not an image\n"), "notes.jpg"),
        (io.BytesIO(rocket), "rocket.jpg"),
        (io.BytesIO(b""), "empty.png"),
    ]

    response = client.post("/api/v1/classify/batch", data={"image": images})

    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.get_json()["results"]
    assert [result["status"] for result in results] == [200, 415, 200, 400]
    assert_matches(results[0], references["chelsea.png"])
    assert_matches(results[2], references["rocket.jpg"])
    assert results[0]["image"] == {
        "width": 451,
        "height": 300,
        "format": "PNG",
        "sha256": hashlib.sha256(chelsea).hexdigest(),
        "source": "upload",
    }
    assert results[1] == problem(
        415,
        "Unsupported media type",
        "unsupported-media-type",
        f"{ACCEPTED}; received plain text",
    )
    assert results[3] == problem(
        400,
        "Bad request",
        "bad-request",
        "the image is empty (0 bytes); send a JPEG, PNG, GIF, WebP, BMP or TIFF image",
    )
    assert app.extensions["model_client"].shapes == [(2, 299, 299, 3)]


def test_urls_are_answered_in_order(app, client, file_server, photos, references):
    base_url, _ = file_server
    urls = [
        f"{base_url}/coffee.png",
        f"{base_url}/notes.txt",
        "http://10.0.0.1/cat.jpg",
        f"{base_url}/missing.png",
        f"{base_url}/chelsea.png",
        42,
    ]

    response = client.post("/api/v1/classify/batch", json={"urls": urls, "top_k": 3})

    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [result["status"] for result in results] == [200, 415, 400, 502, 200, 400]
    assert_matches(results[0], references["coffee.png"])
    assert_matches(results[4], references["chelsea.png"])
    assert len(results[4]["predictions"]) == 3
    assert results[4]["image"]["source"] == "url"
    assert results[2]["detail"] == (
        "host 10.0.0.1 resolves to a non-public address; such URLs are not fetched"
    )
    assert results[3]["detail"] == "127.0.0.1 answered HTTP 404 for the image URL"
    assert results[5]["detail"] == "each URL must be a string; received 42"
    assert app.extensions["model_client"].shapes == [(2, 299, 299, 3)]


@pytest.mark.parametrize(
    ("request_kwargs", "detail"),
    [
        (
            {"json": {"urls": ["http://example.com/a.jpg"] * 17}},
            "a batch holds at most 16 images; received 17",
        ),
        (
            {"json": {"urls": []}},
            "send images as the multipart field 'image' (repeated), or JSON "
            '{"urls": ["https://...", ...]}',
        ),
        (
            {"json": {"urls": "http://example.com/a.jpg"}},
            'the JSON body needs "urls", a list of image URLs',
        ),
        (
            {"data": {"photo": (io.BytesIO(b"x"), "a.png")}},
            "the images must be in the multipart field 'image'; received photo",
        ),
        (
            {"data": {"image": [(io.BytesIO(b"x"), f"{n}.png") for n in range(17)]}},
            "a batch holds at most 16 images; received 17",
        ),
    ],
)
def test_bad_batches_are_400(app, client, request_kwargs, detail):
    response = client.post("/api/v1/classify/batch", **request_kwargs)

    assert response.status_code == 400
    assert response.get_json() == problem(400, "Bad request", "bad-request", detail)
    assert app.extensions["model_client"].shapes == []


def test_image_over_the_upload_limit_fails_alone(model_server, photos):
    app = create_app({"MODEL_SERVER": model_server, "MAX_UPLOAD_BYTES": 200_000})
    chelsea = photos["chelsea.png"].read_bytes()
    small = photos["rocket.jpg"].read_bytes()
    assert len(chelsea) > 200_000 > len(small)

    response = app.test_client().post(
        "/api/v1/classify/batch",
        data={
            "image": [(io.BytesIO(chelsea), "big.png"), (io.BytesIO(small), "r.jpg")]
        },
    )

    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [result["status"] for result in results] == [413, 200]
    assert results[0]["detail"] == (
        "the image 'big.png' is larger than 200,000 bytes, the most accepted"
    )


def test_repeated_image_comes_from_the_cache(app, client, photos):
    data = photos["coffee.png"].read_bytes()

    def classify(top_k):
        response = client.post(
            "/api/v1/classify",
            data={"image": (io.BytesIO(data), "coffee.png"), "top_k": top_k},
        )
        assert response.status_code == 200
        return response.get_json()

    first, second, other_k = classify(5), classify(5), classify(3)

    assert (first["cached"], second["cached"], other_k["cached"]) == (
        False,
        True,
        False,
    )
    assert second["predictions"] == first["predictions"]
    assert (
        second["model"]
        == first["model"]
        == {
            "name": "inception_v3",
            "version": 1,
            "weights": "random",
        }
    )
    assert second["image"] == first["image"]
    assert second["timing_ms"]["inference"] == 0.0
    assert app.extensions["model_client"].shapes == [(1, 299, 299, 3)] * 2


def test_cache_hit_in_a_batch_is_not_sent_again(app, client, photos):
    # Together under 500 kB: larger test-client bodies spill to a temporary
    # file that werkzeug's test client leaves open.
    chelsea = photos["chelsea.png"].read_bytes()
    rocket = photos["rocket.jpg"].read_bytes()
    client.post("/api/v1/classify", data={"image": (io.BytesIO(chelsea), "a.png")})

    response = client.post(
        "/api/v1/classify/batch",
        data={"image": [(io.BytesIO(chelsea), "a.png"), (io.BytesIO(rocket), "b.jpg")]},
    )

    results = response.get_json()["results"]
    assert [result["cached"] for result in results] == [True, False]
    assert app.extensions["model_client"].shapes == [(1, 299, 299, 3)] * 2


def test_version_not_trusted_means_no_cache(model_server, photos):
    app = create_app({"MODEL_SERVER": model_server, "CACHE_VERSION_TTL_SECONDS": 0.0})
    data = photos["coffee.png"].read_bytes()

    answers = [
        app.test_client()
        .post("/api/v1/classify", data={"image": (io.BytesIO(data), "c.png")})
        .get_json()["cached"]
        for _ in range(2)
    ]

    assert answers == [False, False]


def test_batch_under_gunicorn(gateway_url, photos, references):
    names = ["astronaut.png", "rocket.jpg", "chelsea.png"]

    response = requests.post(
        gateway_url + "/api/v1/classify/batch",
        files=[("image", (name, photos[name].read_bytes())) for name in names],
        data={"top_k": 10},
        timeout=120,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    for name, result in zip(names, body["results"], strict=True):
        assert result["status"] == 200
        assert_matches(result, references[name])
    assert set(body["timing_ms"]) == {"fetch", "decode", "inference", "total"}
