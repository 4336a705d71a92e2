"""Shared fixtures: real photos, an exported model and the running stack.

The end-to-end fixtures are session-scoped: one export (random weights,
seed 0), one local model server and one gateway under gunicorn serve every
test that needs them. Their logs go to ``$DEEPCLASSIFY_ARTIFACTS/logs``
(``make test`` names the folder) so a failure can be read afterwards.
"""

import contextlib
import functools
import http.server
import io
import os
import pathlib
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from tools import stack

PHOTO_NAMES = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
SEED = 0


def artifacts_dir():
    """The folder for screenshots and logs a person may look at."""
    path = pathlib.Path(
        os.environ.get("DEEPCLASSIFY_ARTIFACTS", stack.ROOT / "test-artifacts")
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def photo_dir():
    """scikit-image's folder of real photos."""
    import skimage.data

    return pathlib.Path(skimage.data.__file__).parent


@pytest.fixture(scope="session")
def photos(photo_dir):
    """``{name: path}`` of the four photos the end-to-end tests classify."""
    return {name: photo_dir / name for name in PHOTO_NAMES}


@pytest.fixture(scope="session")
def log_dir():
    path = artifacts_dir() / "logs"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def model_base(tmp_path_factory, log_dir):
    """A model folder with one exported version (random weights, seed 0)."""
    base = tmp_path_factory.mktemp("models") / "inception_v3"
    stack.export_model(
        base, log_dir / "export.log", "--weights", "random", "--seed", str(SEED)
    )
    return base


@pytest.fixture(scope="session")
def model_config(model_base, tmp_path_factory):
    return stack.write_model_config(
        tmp_path_factory.mktemp("config") / "models.config", model_base
    )


def wait_for_available(target, timeout=120.0):
    """Waits until GetModelStatus reports a version AVAILABLE."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "inception_v3"
    grpc.channel_ready_future(channel).result(timeout=timeout)
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = stub.GetModelStatus(request, timeout=5)
            if any(s.state == 30 for s in response.model_version_status):
                channel.close()
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"model at {target} not AVAILABLE after {timeout} s")


@pytest.fixture(scope="session")
def model_server_log(log_dir):
    """The log file of the session's model server."""
    return log_dir / "model-server.log"


@contextlib.contextmanager
def running_model_server(model_config, log_path, extra_args=()):
    """Starts a local model server on a free port, stopped on exit.

    Yields:
        Its ``host:port``, once a version is AVAILABLE.
    """
    port = stack.free_port()
    process = stack.start_model_server(
        port, model_config, log_path, extra_args=extra_args
    )
    try:
        wait_for_available(f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture(scope="session")
def model_server(model_config, model_server_log):
    """A local model server with the flags of ``make run``; yields ``host:port``."""
    with running_model_server(
        model_config, model_server_log, stack.MODEL_SERVER_ARGS
    ) as target:
        yield target


@pytest.fixture(scope="session")
def gateway_url(model_server, log_dir, tmp_path_factory):
    """The gateway under gunicorn, allowed to fetch from loopback."""
    port = stack.free_port()
    process = stack.start_gateway(
        port,
        model_server,
        log_dir / "gateway.log",
        settings={
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
            "HISTORY_SQLITE_PATH": tmp_path_factory.mktemp("history") / "h.sqlite3",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        stack.wait_for_http(url + "/readyz", process)
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def postgres(log_dir):
    """A PostgreSQL server of the tests' own (see ``tests/postgres.py``)."""
    from tests.postgres import PostgresServer

    server = PostgresServer(log_dir / "postgres.log")
    try:
        server.start()
        yield server
    finally:
        server.remove()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="session")
def file_server(tmp_path_factory, photo_dir):
    """A loopback HTTP server over a folder holding copies of the photos.

    Yields:
        ``(base_url, folder)``; files written into ``folder`` are served.
    """
    folder = tmp_path_factory.mktemp("served")
    for path in photo_dir.iterdir():
        if path.suffix in (".png", ".jpg"):
            shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("This is a text file, not a photo.\n")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def keras_model():
    """Keras' own InceptionV3 with the exported weights (seed 0), logits out."""
    from export.weights import build_model

    model, origin = build_model("random", seed=SEED)
    assert origin == "random"
    return model


def reference_pixels(path):
    """Decodes and resizes a photo as the gateway documents, with Pillow.

    Written apart from ``gateway.imaging`` so that a mistake there shows.
    """
    from PIL import ImageOps

    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft("RGB", (299, 299))
        image = ImageOps.exif_transpose(image).convert("RGB")
        return np.asarray(image.resize((299, 299), Image.Resampling.BILINEAR))


def keras_logits(model, pixels):
    """Runs Keras InceptionV3 on uint8 RGB pixels with its own preprocessing."""
    from keras.applications.inception_v3 import preprocess_input

    batch = preprocess_input(np.asarray(pixels, dtype=np.float32)[np.newaxis].copy())
    return np.asarray(model(batch, training=False))[0]


def logits_match(served, reference, tolerance=1e-3):
    """The comparison every meaning test uses.

    With random weights all probabilities are about 0.001 and cannot show
    a mistake, so logits are compared relative to their spread.

    Returns:
        ``(ok, worst)``: whether max |served - reference| is at most
        ``tolerance`` times the standard deviation of ``reference``, and
        that maximum in units of the spread.
    """
    served = np.asarray(served, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    worst = float(np.max(np.abs(served - reference)) / np.std(reference))
    return worst <= tolerance, worst


def top_ids_match(served_ids, reference, tolerance=1e-3):
    """Whether served class ids rank as the reference logits do.

    Two classes whose reference logits differ by less than the numeric
    tolerance have no meaningful order (batching may change the last
    digits), so at each rank the served class must have the reference's
    logit at that rank within ``tolerance`` times the spread.

    Returns:
        ``(ok, ranks)``: whether every rank agrees, and the ranks that don't.
    """
    reference = np.asarray(reference, dtype=np.float64)
    expected = np.sort(reference)[::-1][: len(served_ids)]
    allowed = tolerance * np.std(reference)
    wrong = [
        rank
        for rank, class_id in enumerate(served_ids)
        if abs(reference[class_id] - expected[rank]) > allowed
    ]
    return not wrong and len(set(served_ids)) == len(served_ids), wrong


def distinct_encodings(photo, count):
    """The photo as ``count`` different JPEG files, so no answer is cached."""
    with Image.open(photo) as image:
        rgb = image.convert("RGB")
    encodings = []
    for quality in range(60, 60 + count):
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=quality)
        encodings.append(buffer.getvalue())
    return encodings
