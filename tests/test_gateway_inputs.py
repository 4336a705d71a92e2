"""The gateway's answers to bad input, built in-process from a test config.

These requests fail before the model is asked, so no model server runs;
the model server address points at a closed port to prove it.
"""

import io

import pytest
from PIL import Image

from gateway import create_app
from tools.stack import free_port

PROBLEM = "application/problem+json"
ACCEPTED = "expected a JPEG, PNG, GIF, WebP, BMP or TIFF image"


@pytest.fixture
def client():
    app = create_app(
        {"MODEL_SERVER": f"127.0.0.1:{free_port()}", "MAX_UPLOAD_BYTES": 100_000}
    )
    return app.test_client()


def png_bytes(size=(8, 8)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def problem(response):
    assert response.content_type == PROBLEM
    body = response.get_json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == response.status_code
    return body


def test_empty_body_is_400(client):
    response = client.post("/api/v1/classify")

    assert response.status_code == 400
    assert problem(response)["detail"].startswith(
        "send an image as the multipart field 'image'"
    )


def test_empty_upload_is_400(client):
    response = client.post(
        "/api/v1/classify", data={"image": (io.BytesIO(b""), "empty.jpg")}
    )

    assert response.status_code == 400
    assert (
        problem(response)["detail"]
        == "the image is empty (0 bytes); send a JPEG, PNG, GIF, WebP, BMP or TIFF image"
    )


def test_text_file_is_415(client):
    response = client.post(
        "/api/v1/classify",
        data={"image": (io.BytesIO(b"just some words\n"), "photo.jpg")},
    )

    assert response.status_code == 415
    assert problem(response)["detail"] == f"{ACCEPTED}; received plain text"


def test_html_named_png_is_415(client):
    html = b"<!DOCTYPE html><html><body>hi</body></html>"
    response = client.post(
        "/api/v1/classify", data={"image": (io.BytesIO(html), "cat.png", "image/png")}
    )

    assert response.status_code == 415
    assert problem(response)["detail"] == f"{ACCEPTED}; received an HTML page"


def test_missing_field_is_400(client):
    response = client.post(
        "/api/v1/classify", data={"photo": (io.BytesIO(png_bytes()), "a.png")}
    )

    assert response.status_code == 400
    assert problem(response)["detail"] == (
        "the image must be in the multipart field 'image'; received photo"
    )


def test_two_image_parts_are_400_pointing_to_the_batch_endpoint(client):
    response = client.post(
        "/api/v1/classify",
        data={
            "image": [
                (io.BytesIO(png_bytes()), "a.png"),
                (io.BytesIO(png_bytes((9, 9))), "b.png"),
            ]
        },
    )

    assert response.status_code == 400
    assert problem(response)["detail"] == (
        "send one 'image' part here; several images go to /api/v1/classify/batch"
    )


def test_malformed_json_is_named_as_such(client):
    response = client.post(
        "/api/v1/classify",
        data='{"url": "https://example.com/a.jpg"',
        content_type="application/json",
    )

    assert response.status_code == 400
    assert problem(response)["detail"] == (
        'the body is not valid JSON; send an object such as {"url": "https://..."}'
    )


def test_batch_json_errors_show_the_batch_shape(client):
    response = client.post("/api/v1/classify/batch", json=["https://a.example/a.jpg"])

    assert response.status_code == 400
    assert problem(response)["detail"] == (
        'the JSON body must be an object such as {"urls": ["https://...", ...]}'
    )


def test_wrong_method_is_json_405_with_allow(client):
    response = client.get("/api/v1/classify")

    assert response.status_code == 405
    assert problem(response)["title"] == "Method Not Allowed"
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, 'the JSON body needs a "url" string naming an image'),
        ({"url": ""}, 'the JSON body needs a "url" string naming an image'),
        ([1, 2], 'the JSON body must be an object such as {"url": "https://..."}'),
        (
            {"url": "ftp://example.com/a.jpg"},
            "only http and https URLs are fetched; received scheme 'ftp'",
        ),
        (
            {"url": "http://127.0.0.1/a.jpg"},
            "host 127.0.0.1 resolves to a non-public address; such URLs are not fetched",
        ),
        (
            {"url": "http://10.0.0.1/a.jpg"},
            "host 10.0.0.1 resolves to a non-public address; such URLs are not fetched",
        ),
        (
            {"url": "http://[::1]/a.jpg"},
            "host ::1 resolves to a non-public address; such URLs are not fetched",
        ),
        (
            {"url": "http://169.254.169.254/latest"},
            "host 169.254.169.254 resolves to a non-public address; such URLs are not fetched",
        ),
        (
            {"url": "http://localhost:8000/a.jpg"},
            "host localhost resolves to a non-public address; such URLs are not fetched",
        ),
    ],
)
def test_bad_json_and_refused_urls_are_400(client, body, detail):
    response = client.post("/api/v1/classify", json=body)

    assert response.status_code == 400
    assert problem(response)["detail"] == detail


@pytest.mark.parametrize("top_k", ["0", "11", "abc", "-1", "2.5"])
def test_bad_top_k_is_400(client, top_k):
    response = client.post(
        "/api/v1/classify",
        data={"image": (io.BytesIO(png_bytes()), "a.png"), "top_k": top_k},
    )

    assert response.status_code == 400
    assert problem(response)["detail"].startswith("top_k must be")


def test_too_large_upload_is_413(client):
    big = b"\xff\xd8" + b"\0" * 200_000
    response = client.post(
        "/api/v1/classify", data={"image": (io.BytesIO(big), "a.jpg")}
    )

    assert response.status_code == 413
    assert problem(response)["detail"] == (
        "the request body is larger than 100,000 bytes, the most accepted"
    )


def test_model_server_down_is_503_with_retry_after(client):
    response = client.post(
        "/api/v1/classify", data={"image": (io.BytesIO(png_bytes()), "a.png")}
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert (
        problem(response)["detail"]
        == "the model server is unavailable; try again shortly"
    )


def test_unknown_route_is_json_404(client):
    response = client.get("/api/v1/nothing")

    assert response.status_code == 404
    assert problem(response)["title"] == "Not Found"


def test_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-123"
