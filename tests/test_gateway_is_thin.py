"""The gateway runs without TensorFlow: not installed, never imported."""

import pathlib
import subprocess

import pytest
import requests

from tools import stack

PROBE = """
import io, sys
import numpy as np
from PIL import Image
from gateway import create_app
from gateway.imaging import decode_image
from deepclassify import tfs_protos

app = create_app({"MODEL_SERVER": "127.0.0.1:1"})
client = app.test_client()
assert client.get("/healthz").status_code == 200
buffer = io.BytesIO()
Image.new("RGB", (40, 30)).save(buffer, "PNG")
assert client.post("/api/v1/classify", data={"image": (io.BytesIO(buffer.getvalue()), "a.png")}).status_code == 503
decode_image(buffer.getvalue(), 10**6)
tfs_protos.make_tensor_proto(np.zeros((1, 299, 299, 3), np.uint8))
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "tensorflow_serving"))
print("LOADED", loaded)
"""


def test_gateway_environment_has_no_tensorflow():
    result = subprocess.run(
        [str(stack.GATEWAY_BIN / "python"), "-c", "import tensorflow"],
        capture_output=True,
        text=True,
    )

    assert result.returncode != 0
    assert "No module named 'tensorflow'" in result.stderr


def test_gateway_code_imports_no_tensorflow():
    result = subprocess.run(
        [str(stack.GATEWAY_BIN / "python"), "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=stack.ROOT,
    )

    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


@pytest.mark.e2e
def test_serving_gateway_workers_have_no_tensorflow_loaded(gateway_url, photos):
    response = requests.post(
        gateway_url + "/api/v1/classify",
        files={"image": photos["chelsea.png"].read_bytes()},
        timeout=60,
    )
    assert response.status_code == 200

    port = gateway_url.rsplit(":", 1)[1]
    pids = subprocess.run(
        ["pgrep", "-f", "gunicorn -c gateway/gunicorn.conf.py"],
        capture_output=True,
        text=True,
    ).stdout.split()
    checked = 0
    for pid in pids:
        try:
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
            maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        if f"DEEPCLASSIFY_BIND=127.0.0.1:{port}".encode() not in environ:
            continue
        checked += 1
        assert "tensorflow" not in maps
    assert checked >= 2  # the master and at least one worker
