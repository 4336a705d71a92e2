"""One log line per request: its id, status, bytes and each stage's time."""

import io
import logging
import re

import pytest

from gateway import create_app
from tools.stack import free_port


@pytest.fixture
def client():
    return create_app({"MODEL_SERVER": f"127.0.0.1:{free_port()}"}).test_client()


def request_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "gateway.requests"]


def test_line_has_id_status_bytes_and_stages(client, caplog):
    caplog.set_level(logging.INFO, logger="gateway.requests")

    response = client.post(
        "/api/v1/classify",
        data={"image": (io.BytesIO(b"words, not pixels\n"), "a.jpg")},
        headers={"X-Request-ID": "req-42"},
    )

    assert response.status_code == 415
    assert response.headers["X-Request-ID"] == "req-42"
    (line,) = request_lines(caplog)
    assert re.fullmatch(
        r"id=req-42 POST /api/v1/classify status=415 in=\d+ out=\d+ "
        r"total_ms=[\d.]+ fetch=0\.0 decode=[\d.]+ inference=0\.0",
        line,
    ), line


@pytest.mark.parametrize("incoming", ["", "x" * 129, "bad\tid"])
def test_unusable_request_id_is_replaced(client, caplog, incoming):
    caplog.set_level(logging.INFO, logger="gateway.requests")

    response = client.get("/healthz", headers={"X-Request-ID": incoming})

    assert response.status_code == 200
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    (line,) = request_lines(caplog)
    assert line.startswith(f"id={generated} GET /healthz status=200 ")
