"""Fault drills: the real processes under load while something breaks.

One local model server plays a slow model: it runs with the testing aid
``--inject_delay_ms`` (``serving/fault_injection.py``), so every Predict
call takes ``DELAY_SECONDS``. That keeps calls in flight whenever a fault
strikes, and with a short gateway deadline it is a model slower than the
deadline. The gateways run under gunicorn as in production; the load is
``tools.soak.Load``: uploads and loopback URLs of real photos.

The drills run in file order so that the model server is started twice in
all: the SIGKILL drill restarts it, the SIGTERM drill ends it last.

The drill of a full batch queue is ``tests/test_batch_queue_drill.py``;
``tests/test_model_client_faults.py`` covers the gateway's half alone.
"""

import datetime
import runpy
import signal
import threading
import time

import grpc
import numpy as np
import psutil
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from deepclassify import contract
from serving.__main__ import GRACE_SECONDS
from tests.conftest import wait_for_available
from tools import stack
from tools.soak import Load

pytestmark = pytest.mark.e2e

DELAY_MS = 1500
DELAY_SECONDS = DELAY_MS / 1000
DEADLINE_SECONDS = 20.0
"""The model deadline of the drills' gateways: the first calls after a
start are slow, and CI's 2 cores are shared with the load."""
SHORT_DEADLINE_SECONDS = 1.0
"""The deadline of the gateway that finds the model too slow."""
RECOVERY_SECONDS = 60.0
"""How soon after the restarted model server is AVAILABLE the gateway must
answer 200 again. The reconnect backoff is capped at 2 s; gRPC's default
could wait up to 120 s. The rest is the first, slow calls of a new model."""
GUNICORN_CONF = runpy.run_path(str(stack.ROOT / "gateway" / "gunicorn.conf.py"))
PROBLEM_TYPES = "https://deepclassify.dev/problems/"
DOWN_SECONDS = 3.0
"""How long the killed model server stays down before its restart."""
# Seconds of slack on every bound: process scheduling on 2 shared cores.
SLACK = 2.0
EXIT_SECONDS = 15.0
"""Seconds a Python process with TensorFlow may take to exit once stopped:
tearing TensorFlow down takes seconds on a busy machine."""


class SlowModelServer:
    """The local model server with an injected delay, on a fixed port."""

    def __init__(self, model_config, log_dir):
        self.model_config = model_config
        self.log_dir = log_dir
        self.port = stack.free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.process = None
        self.starts = 0

    def start(self):
        self.stop()
        self.starts += 1
        self.process = stack.start_model_server(
            self.port,
            self.model_config,
            self.log_dir / f"drill-model-server-{self.starts}.log",
            extra_args=["--inject_delay_ms", str(DELAY_MS)],
        )
        wait_for_available(self.target)
        warm_up(self.target)

    def ensure_running(self):
        if self.process is None or not self.process.alive():
            self.start()

    def stop(self):
        if self.process is not None:
            self.process.stop()


def warm_up(target):
    """Runs one Predict: a model's first call is much slower than the rest."""
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.inputs[contract.INPUT_IMAGES].CopyFrom(
        tf.make_tensor_proto(
            np.zeros((1, contract.IMAGE_SIZE, contract.IMAGE_SIZE, 3), np.uint8)
        )
    )
    stub.Predict(request, timeout=120)
    channel.close()


class Gateway:
    """A gateway under gunicorn, and its processes."""

    def __init__(self, name, model_server, log_dir, settings=None, **options):
        # No answer cache: a drill's repeated photos must reach the model.
        settings = {
            "MODEL_DEADLINE_SECONDS": DEADLINE_SECONDS,
            "CACHE_MAX_ENTRIES": 0,
            **(settings or {}),
        }
        self.port = stack.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = stack.start_gateway(
            self.port,
            model_server,
            log_dir / f"drill-{name}.log",
            settings={"FETCH_ALLOW_NETWORKS": "127.0.0.0/8", **settings},
            **options,
        )
        stack.wait_for_http(self.url + "/healthz", self.process)

    def workers(self):
        """The process ids of gunicorn's workers."""
        return {child.pid for child in psutil.Process(self.process.pid).children()}

    def stop(self):
        self.process.stop()


@pytest.fixture(scope="module")
def slow_model(model_config, log_dir):
    server = SlowModelServer(model_config, log_dir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(slow_model, log_dir):
    """Two workers with the default limits and the default deadline."""
    gateway = Gateway("gateway", slow_model.target, log_dir)
    yield gateway
    gateway.stop()


@pytest.fixture
def load(gateway, photos, file_server):
    """A load of 8 clients on ``gateway``, started by the test."""
    load = Load(gateway.url, photos, file_server[0], concurrency=8)
    yield load
    load.stop()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def answered_200(load, since=0.0):
    return sum(
        1
        for result in load.snapshot()
        if result.outcome == "200" and result.started >= since
    )


def drain_seconds(log_path):
    """Seconds from the model server's SIGTERM to its "stopped", from its log."""
    times = {}
    for line in log_path.read_text().splitlines():
        for mark in ("serving: signal 15:", "serving: stopped"):
            if mark in line:
                stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                times[mark] = stamp
    return (times["serving: stopped"] - times["serving: signal 15:"]).total_seconds()


def send_together(url, photo, count):
    """Sends ``count`` uploads at once; returns their answers and seconds."""
    answers = [None] * count
    data = photo.read_bytes()
    barrier = threading.Barrier(count)

    def send(index):
        barrier.wait()
        started = time.monotonic()
        response = requests.post(
            url + "/api/v1/classify",
            files={"image": (photo.name, data)},
            timeout=60,
        )
        answers[index] = (response, time.monotonic() - started)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, answers


def test_slow_model_is_504_and_the_line_beyond_the_limit_is_503(
    slow_model, photos, log_dir
):
    slow_model.ensure_running()
    gateway = Gateway(
        "slow-model",
        slow_model.target,
        log_dir,
        settings={
            "MODEL_DEADLINE_SECONDS": SHORT_DEADLINE_SECONDS,
            "MODEL_MAX_CONCURRENT_CALLS": 2,
            "MODEL_MAX_WAITING_CALLS": 2,
        },
        workers=1,
        threads=12,
    )
    try:
        threads, answers = send_together(gateway.url, photos["chelsea.png"], 8)
        time.sleep(0.3)
        started = time.monotonic()
        health = requests.get(gateway.url + "/healthz", timeout=10)
        health_seconds = time.monotonic() - started
        for thread in threads:
            thread.join()
        later_threads, later = send_together(gateway.url, photos["chelsea.png"], 1)
        later_threads[0].join()
    finally:
        gateway.stop()

    # Two calls in flight and two waiting run out of time; four are refused.
    statuses = sorted(response.status_code for response, _ in answers)
    assert statuses == [503] * 4 + [504] * 4
    for response, seconds in answers:
        body = response.json()
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "2"
            assert body == {
                "type": PROBLEM_TYPES + "model-busy",
                "title": "Model server busy",
                "status": 503,
                "detail": "all 2 model calls of this worker are in flight and "
                "2 requests already wait; try again shortly",
            }
            assert seconds < SHORT_DEADLINE_SECONDS
        else:
            assert body["type"] == PROBLEM_TYPES + "timeout"
            assert body["detail"].startswith(
                "the model server did not answer within 1 s"
            )
            assert SHORT_DEADLINE_SECONDS <= seconds < SHORT_DEADLINE_SECONDS + SLACK
    # Threads stayed free: the health check did not queue behind the model.
    assert health.status_code == 200
    assert health_seconds < SHORT_DEADLINE_SECONDS
    # Every slot was given back: the next request is called, not refused.
    response, _ = later[0]
    assert response.status_code == 504
    assert response.json()["detail"] == "the model server did not answer within 1 s"


def test_gateway_sigterm_finishes_requests_in_flight(slow_model, photos, log_dir):
    slow_model.ensure_running()
    gateway = Gateway("sigterm", slow_model.target, log_dir, workers=1)
    try:
        threads, answers = send_together(gateway.url, photos["chelsea.png"], 4)
        time.sleep(DELAY_SECONDS / 2)
        terminated_at = time.monotonic()
        gateway.process.signal(signal.SIGTERM)
        for thread in threads:
            thread.join()
        code = gateway.process.popen.wait(GUNICORN_CONF["graceful_timeout"] + SLACK)
        exited_after = time.monotonic() - terminated_at
    finally:
        gateway.stop()

    assert [response.status_code for response, _ in answers] == [200] * 4
    assert all(seconds >= DELAY_SECONDS for _, seconds in answers)
    assert code == 0
    assert exited_after < GUNICORN_CONF["graceful_timeout"]


def test_gunicorn_reload_drops_no_request(gateway, photos, file_server):
    load = Load(gateway.url, photos, file_server[0], concurrency=8, keep_alive=False)
    master = gateway.process.pid
    old_workers = gateway.workers()
    load.start(count=10_000, time_limit=120)
    try:
        wait_until(lambda: answered_200(load) >= 8, 60, "8 answers before reload")
        reloaded_at = time.monotonic()
        gateway.process.signal(signal.SIGHUP)
        replaced_at = wait_until(
            lambda: (
                len(gateway.workers() - old_workers) == 2
                and not gateway.workers() & old_workers
            ),
            60,
            "two new workers and no old one",
        )
        wait_until(
            lambda: answered_200(load, since=replaced_at) >= 8,
            60,
            "8 answers from the new workers",
        )
    finally:
        results = load.stop()

    in_flight = [r for r in results if r.started < reloaded_at < r.ended]
    assert in_flight
    assert {result.outcome for result in results} == {"200"}
    assert gateway.process.pid == master and gateway.process.alive()


def test_worker_sigkill_only_its_connections_fail(gateway, load):
    master = gateway.process.pid
    load.start(count=10_000, time_limit=120)
    try:
        wait_until(lambda: answered_200(load) >= 8, 60, "8 answers before the kill")
        victim = psutil.Process(min(gateway.workers()))
        open_connections = len(
            [
                c
                for c in victim.net_connections("tcp")
                if c.status == "ESTABLISHED" and c.laddr.port == gateway.port
            ]
        )
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        replaced_at = wait_until(
            lambda: len(gateway.workers()) == 2 and victim.pid not in gateway.workers(),
            30,
            "the master replaced the worker",
        )
        wait_until(
            lambda: answered_200(load, since=replaced_at) >= 8,
            60,
            "8 answers after the replacement",
        )
    finally:
        results = load.stop()

    no_answer = [r for r in results if r.status is None]
    # The only failures are connections the killed worker held; none is 5xx.
    assert all(r.status is None or r.status < 500 for r in results)
    assert len(no_answer) <= open_connections
    assert all(r.started < killed_at for r in no_answer)
    assert {r.outcome for r in results if r.started > replaced_at} == {"200"}
    assert gateway.process.pid == master and gateway.process.alive()


def test_model_server_sigkill_then_restart_recovers(
    slow_model, gateway, photos, file_server
):
    slow_model.ensure_running()
    workers = gateway.workers()
    load = Load(gateway.url, photos, file_server[0], concurrency=4)
    load.pause_after_error = 0.2
    load.start(count=10_000, time_limit=240)
    try:
        wait_until(lambda: answered_200(load) >= 4, 60, "4 answers before the kill")
        killed_at = time.monotonic()
        slow_model.process.signal(signal.SIGKILL)
        slow_model.process.popen.wait(10)
        # Down long enough for whole requests, retries included, to fit.
        time.sleep(DOWN_SECONDS)
        restarted_at = time.monotonic()
        slow_model.start()
        back_at = time.monotonic()
        wait_until(
            lambda: answered_200(load, since=back_at) >= 4,
            RECOVERY_SECONDS,
            "4 answers after the restart",
        )
    finally:
        results = load.stop()

    # Requests in flight at the kill end within the deadline: 503 or 504,
    # or 200 for an answer that had already left the model server.
    in_flight = [r for r in results if r.started < killed_at < r.ended]
    assert {r.status for r in in_flight} <= {200, 503, 504}
    assert any(r.status == 503 for r in in_flight)
    assert all(r.ended - killed_at < DEADLINE_SECONDS for r in in_flight)
    # While it is down every request is 503, with Retry-After.
    down = [r for r in results if killed_at < r.started and r.ended < restarted_at]
    assert down
    assert {r.status for r in down} == {503}
    assert {r.retry_after for r in results if r.status == 503} == {"2"}
    # None hangs, none is lost, and the same workers serve again.
    assert {r.status for r in results} <= {200, 503, 504}
    assert all(r.seconds < DEADLINE_SECONDS + SLACK for r in results)
    assert gateway.workers() == workers


def test_model_server_sigterm_finishes_calls_in_flight(slow_model, gateway, photos):
    slow_model.ensure_running()
    threads, answers = send_together(gateway.url, photos["chelsea.png"], 4)
    time.sleep(DELAY_SECONDS / 2)
    slow_model.process.signal(signal.SIGTERM)
    time.sleep(0.2)
    during = requests.post(
        gateway.url + "/api/v1/classify",
        files={"image": ("chelsea.png", photos["chelsea.png"].read_bytes())},
        timeout=60,
    )
    for thread in threads:
        thread.join()
    code = slow_model.process.popen.wait(GRACE_SECONDS + EXIT_SECONDS)

    # The four calls in flight finish; a new one is refused meanwhile.
    assert [response.status_code for response, _ in answers] == [200] * 4
    assert during.status_code == 503
    assert during.headers["Retry-After"] == "2"
    assert code == 0
    assert drain_seconds(slow_model.process.log_path) < GRACE_SECONDS
