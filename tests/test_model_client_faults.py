"""The gateway's answers when the model server fails, against a tiny server.

A real gRPC server on port 0 implements ``PredictionService/Predict`` with
the official ``tensorflow-serving-api`` messages and fails the way the test
asks: ``UNAVAILABLE`` as TensorFlow Serving answers when its batch queue is
full, a call slower than the deadline, or a call held until the test lets
it go. The gateway is built in-process from a test config.
"""

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from deepclassify import contract
from gateway import create_app
from gateway.model_client import RETRY_ATTEMPTS

PROBLEM = "application/problem+json"
BATCH_QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"
PROBLEM_TYPES = "https://deepclassify.dev/problems/"


class TinyModelServer:
    """A gRPC Predict endpoint whose behaviour each test chooses.

    Args:
        behaviour: called with ``(request, context)`` on every Predict; it
            returns a ``PredictResponse`` or aborts the call.
    """

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.calls = 0
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        handler = grpc.unary_unary_rpc_method_handler(
            self._predict,
            request_deserializer=predict_pb2.PredictRequest.FromString,
            response_serializer=predict_pb2.PredictResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "tensorflow.serving.PredictionService", {"Predict": handler}
                ),
            )
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def _predict(self, request, context):
        with self._lock:
            self.calls += 1
        return self.behaviour(request, context)

    def stop(self):
        self._server.stop(0).wait()


def model_answer(request):
    """A valid answer of the model contract: logits 0..999 for each image."""
    batch = request.inputs[contract.INPUT_IMAGES].tensor_shape.dim[0].size
    logits = np.tile(np.arange(contract.NUM_CLASSES, dtype=np.float32), (batch, 1))
    probabilities = tf.nn.softmax(logits).numpy()
    response = predict_pb2.PredictResponse()
    response.model_spec.name = contract.MODEL_NAME
    response.model_spec.version.value = 1
    outputs = {
        contract.OUTPUT_LOGITS: logits,
        contract.OUTPUT_PROBABILITIES: probabilities,
        contract.OUTPUT_WEIGHTS: np.array([b"random"] * batch),
    }
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


@pytest.fixture
def tiny_server():
    servers = []

    def start(behaviour):
        server = TinyModelServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def gateway_client(server, **settings):
    app = create_app({"MODEL_SERVER": f"127.0.0.1:{server.port}", **settings})
    return app.test_client()


def classify(client, photo):
    with open(photo, "rb") as file:
        return client.post("/api/v1/classify", data={"image": (file, photo.name)})


def problem(response):
    assert response.content_type == PROBLEM
    return response.get_json()


def test_batch_queue_full_is_503_with_retry_after(tiny_server, photos):
    def queue_full(request, context):
        context.abort(grpc.StatusCode.UNAVAILABLE, BATCH_QUEUE_FULL)

    server = tiny_server(queue_full)
    client = gateway_client(server)

    response = classify(client, photos["chelsea.png"])

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert problem(response) == {
        "type": PROBLEM_TYPES + "model-unavailable",
        "title": "Model server unavailable",
        "status": 503,
        "detail": "the model server is unavailable; try again shortly",
    }
    # gRPC's retry policy tried again before giving up.
    assert server.calls == RETRY_ATTEMPTS


def test_call_past_the_deadline_is_504(tiny_server, photos):
    release = threading.Event()

    def slow(request, context):
        release.wait(5)
        return model_answer(request)

    server = tiny_server(slow)
    client = gateway_client(server, MODEL_DEADLINE_SECONDS=0.3)

    response = classify(client, photos["chelsea.png"])
    release.set()

    assert response.status_code == 504
    assert "Retry-After" not in response.headers
    assert problem(response) == {
        "type": PROBLEM_TYPES + "timeout",
        "title": "Timed out",
        "status": 504,
        "detail": "the model server did not answer within 0.3 s",
    }
    assert server.calls == 1


def test_calls_beyond_the_limit_wait_then_are_refused(tiny_server, photos):
    release = threading.Event()
    arrived = threading.Semaphore(0)

    def held(request, context):
        arrived.release()
        release.wait(10)
        return model_answer(request)

    server = tiny_server(held)
    client = gateway_client(
        server, MODEL_MAX_CONCURRENT_CALLS=1, MODEL_MAX_WAITING_CALLS=1
    )
    app = client.application
    limiter = app.extensions["model_client"].limiter
    answers = {}

    def send(name):
        answers[name] = classify(app.test_client(), photos["chelsea.png"])

    first = threading.Thread(target=send, args=("first",))
    first.start()
    assert arrived.acquire(timeout=5)
    second = threading.Thread(target=send, args=("second",))
    second.start()
    for _ in range(200):
        if limiter.waiting == 1:
            break
        time.sleep(0.01)
    assert (limiter.active, limiter.waiting) == (1, 1)

    refused = classify(client, photos["chelsea.png"])
    release.set()
    first.join()
    second.join()

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "2"
    assert problem(refused) == {
        "type": PROBLEM_TYPES + "model-busy",
        "title": "Model server busy",
        "status": 503,
        "detail": "all 1 model calls of this worker are in flight and 1 requests "
        "already wait; try again shortly",
    }
    for name in ("first", "second"):
        assert answers[name].status_code == 200
        ids = [p["class_id"] for p in answers[name].get_json()["predictions"]]
        assert ids == [999, 998, 997, 996, 995]
    # The refused request never reached the model server.
    assert server.calls == 2
    assert (limiter.active, limiter.waiting) == (0, 0)
