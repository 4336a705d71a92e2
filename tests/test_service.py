"""The gateway as a service: 413 under gunicorn, metrics, model faults.

These tests start their own gateway (and, for the faults, their own model
server) with ``tools/stack.py``, so that stopping or counting does not
disturb the session's processes.
"""

import io
import json
import shutil
import socket
import time

import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from gateway import create_app
from tests.conftest import wait_for_available
from tools import stack

pytestmark = pytest.mark.e2e

# Generous: the first Predict of a freshly loaded model on a busy machine
# can take seconds, and only the stopped server's 503 must come sooner.
DEADLINE_SECONDS = 30.0


def png_bytes(colour=(200, 120, 40)):
    """A small PNG; a different colour is a different image to the cache."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(buffer, "PNG")
    return buffer.getvalue()


def test_too_large_upload_is_json_413_under_gunicorn(gateway_url):
    # Well over the 20 MiB default: a reset connection would raise here.
    body = b"\xff\xd8\xff" + b"\0" * (60 * 1024 * 1024)

    response = requests.post(
        gateway_url + "/api/v1/classify",
        files={"image": ("big.jpg", body, "image/jpeg")},
        timeout=120,
    )

    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://deepclassify.dev/problems/payload-too-large",
        "title": "Payload too large",
        "status": 413,
        "detail": "the request body is larger than 20,971,520 bytes, the most accepted",
    }
    assert requests.get(gateway_url + "/healthz", timeout=10).status_code == 200


def test_client_sending_all_before_reading_gets_the_413(gateway_url):
    """Like curl: the whole body first, then the answer; no broken pipe."""
    body = b"\0" * (60 * 1024 * 1024)
    host, port = gateway_url.removeprefix("http://").split(":")
    head = (
        "POST /api/v1/classify HTTP/1.1\r\nHost: gateway\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()

    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 REQUEST ENTITY TOO LARGE"
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "type": "https://deepclassify.dev/problems/payload-too-large",
        "title": "Payload too large",
        "status": 413,
        "detail": "the request body is larger than 20,971,520 bytes, the most accepted",
    }


def test_too_large_chunked_upload_is_json_413_under_gunicorn(gateway_url):
    def chunks():
        for _ in range(40):
            yield b"\0" * (1024 * 1024)

    response = requests.post(
        gateway_url + "/api/v1/classify",
        data=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=120,
    )

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "the request body is larger than 20,971,520 bytes, the most accepted"
    )


@pytest.fixture
def own_gateway(model_server, log_dir, tmp_path):
    """A gateway of two workers with a metrics folder the test can see."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    # A file left by an earlier run; the gateway must start from nothing.
    (metrics_dir / "counter_1.db").write_bytes(b"\0" * 64)
    port = stack.free_port()
    process = stack.start_gateway(
        port,
        model_server,
        log_dir / "gateway-metrics.log",
        workers=2,
        env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        stack.wait_for_http(url + "/healthz", process)
        yield url, metrics_dir
    finally:
        process.stop()


def read_metrics(url):
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def test_metrics_count_every_worker(own_gateway):
    url, metrics_dir = own_gateway
    before = read_metrics(url)
    for _ in range(6):
        assert requests.get(url + "/healthz", timeout=10).status_code == 200
    for _ in range(2):
        response = requests.post(
            url + "/api/v1/classify",
            files={"image": ("a.png", b"plain text")},
            timeout=30,
        )
        assert response.status_code == 415
    response = requests.post(
        url + "/api/v1/classify", files={"image": ("a.png", png_bytes())}, timeout=60
    )
    assert response.status_code == 200

    after = read_metrics(url)

    def added(name, labels):
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    def requests_total(route, method, status):
        labels = (("method", method), ("route", route), ("status", status))
        return added("deepclassify_http_requests_total", labels)

    assert requests_total("/healthz", "GET", "200") == 6
    assert requests_total("/api/v1/classify", "POST", "415") == 2
    assert requests_total("/api/v1/classify", "POST", "200") == 1
    stage_counts = {
        stage: added("deepclassify_stage_duration_seconds_count", (("stage", stage),))
        for stage in ("decode", "inference")
    }
    assert stage_counts == {"decode": 3, "inference": 1}
    latency = ("deepclassify_http_request_duration_seconds_count",)
    assert added(*latency, (("route", "/healthz"),)) == 6
    # Counted from this run's start only: the stale file was removed.
    assert not (metrics_dir / "counter_1.db").exists()


@pytest.fixture
def own_stack(model_config, log_dir):
    """A model server and a one-worker gateway of the test's own."""
    model_port = stack.free_port()
    target = f"127.0.0.1:{model_port}"
    log = log_dir / "model-server-faults.log"
    servers = [stack.start_model_server(model_port, model_config, log)]
    gateway_port = stack.free_port()
    gateway = stack.start_gateway(
        gateway_port,
        target,
        log_dir / "gateway-faults.log",
        settings={"MODEL_DEADLINE_SECONDS": DEADLINE_SECONDS},
        workers=1,
    )
    url = f"http://127.0.0.1:{gateway_port}"

    def restart():
        servers.append(stack.start_model_server(model_port, model_config, log))
        wait_for_available(target)

    try:
        wait_for_available(target)
        stack.wait_for_http(url + "/readyz", gateway)
        yield url, servers, restart
    finally:
        gateway.stop()
        for server in servers:
            server.stop()


def test_model_server_stopped_then_back(own_stack):
    url, servers, restart = own_stack

    def classify(colour):
        # Each call a new image, so no answer can come from the cache.
        started = time.monotonic()
        response = requests.post(
            url + "/api/v1/classify",
            files={"image": ("a.png", png_bytes(colour))},
            timeout=60,
        )
        return response, time.monotonic() - started

    assert classify((1, 2, 3))[0].status_code == 200

    servers[0].stop()
    down, elapsed = classify((4, 5, 6))

    assert down.status_code == 503
    assert down.headers["Retry-After"] == "2"
    assert down.json()["detail"] == "the model server is unavailable; try again shortly"
    assert elapsed < DEADLINE_SECONDS
    assert requests.get(url + "/readyz", timeout=30).status_code == 503

    restart()
    back, _ = classify((7, 8, 9))

    assert back.status_code == 200, back.text
    assert back.json()["model"]["version"] == 1


def test_cache_follows_a_new_model_version(model_base, log_dir, tmp_path, photos):
    """A version loaded while answers are cached: the cache moves on to it."""
    base = tmp_path / "inception_v3"
    shutil.copytree(model_base / "1", base / "1")
    config = stack.write_model_config(tmp_path / "models.config", base)
    port = stack.free_port()
    target = f"127.0.0.1:{port}"
    server = stack.start_model_server(port, config, log_dir / "model-versions.log")
    ttl = 1.0
    try:
        wait_for_available(target)
        app = create_app({"MODEL_SERVER": target, "CACHE_VERSION_TTL_SECONDS": ttl})
        data = photos["chelsea.png"].read_bytes()

        def classify():
            response = app.test_client().post(
                "/api/v1/classify", data={"image": (io.BytesIO(data), "c.png")}
            )
            assert response.status_code == 200
            answer = response.get_json()
            return answer["cached"], answer["model"]["version"]

        assert [classify(), classify()] == [(False, 1), (True, 1)]

        # A new version appears the way export writes one: renamed into place.
        shutil.copytree(base / "1", base / ".2-partial")
        (base / ".2-partial").rename(base / "2")
        client = app.extensions["model_client"]
        deadline = time.monotonic() + 120
        while [v for v, state, _ in client.status() if state == "AVAILABLE"] != [2]:
            assert time.monotonic() < deadline, client.status()
            time.sleep(0.2)
        time.sleep(ttl)

        assert [classify(), classify()] == [(False, 2), (True, 2)]
    finally:
        server.stop()
