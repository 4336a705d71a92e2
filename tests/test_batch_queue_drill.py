"""Drill: the model server's batch queue is full, and the gateway says so.

A local model server batches with the smallest queue there is (one batch
of one call waiting, one thread), the way a TensorFlow Serving overwhelmed
by traffic refuses calls with ``UNAVAILABLE``. A burst of distinct photos
through the real gateway must then end in answers of two kinds only: 200,
or 503 with ``Retry-After`` and the problem body, never a 500 or a hang.
"""

import concurrent.futures

import pytest
import requests

from tests.conftest import distinct_encodings, wait_for_available
from tools import stack

pytestmark = pytest.mark.e2e

BURST = 24
TINY_QUEUE = """\
max_batch_size { value: 1 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 1
"""


@pytest.fixture(scope="module")
def crowded_stack(model_config, tmp_path_factory, log_dir):
    """A model server with a one-call queue and a gateway in front of it."""
    batching = tmp_path_factory.mktemp("tiny-queue") / "batching.config"
    batching.write_text(TINY_QUEUE)
    grpc_port = stack.free_port()
    model_server = stack.start_model_server(
        grpc_port,
        model_config,
        log_dir / "model-server-tiny-queue.log",
        extra_args=["--enable_batching", "--batching_parameters_file", str(batching)],
    )
    gateway = None
    try:
        wait_for_available(f"127.0.0.1:{grpc_port}")
        port = stack.free_port()
        gateway = stack.start_gateway(
            port,
            f"127.0.0.1:{grpc_port}",
            log_dir / "gateway-tiny-queue.log",
            settings={"MODEL_MAX_CONCURRENT_CALLS": BURST},
            workers=1,
        )
        url = f"http://127.0.0.1:{port}"
        stack.wait_for_http(url + "/readyz", gateway)
        yield url, gateway
    finally:
        if gateway is not None:
            gateway.stop()
        model_server.stop()


def test_full_batch_queue_is_503_with_retry_after(crowded_stack, photos):
    url, gateway = crowded_stack
    images = distinct_encodings(photos["astronaut.png"], BURST)

    def classify(data):
        return requests.post(
            url + "/api/v1/classify",
            files={"image": ("photo.jpg", data)},
            timeout=60,
        )

    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(classify, images))

    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 503}, statuses
    refused = [answer for answer in answers if answer.status_code == 503]
    assert refused, f"the one-call queue never filled: {statuses}"
    for answer in refused:
        assert answer.headers["Retry-After"] == "2"
        assert answer.json() == {
            "type": "https://deepclassify.dev/problems/model-unavailable",
            "title": "Model server unavailable",
            "status": 503,
            "detail": answer.json()["detail"],
        }
    # The refusals came from the model server's full queue, not elsewhere.
    assert "batch scheduling queue" in gateway.log_path.read_text()

    # Once the burst is over, the same gateway answers again.
    after = classify(distinct_encodings(photos["chelsea.png"], 1)[0])
    assert after.status_code == 200, after.text
