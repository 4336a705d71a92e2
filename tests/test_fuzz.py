"""Property: whatever bytes arrive, the gateway answers 4xx or 200, and lives.

Hypothesis sends arbitrary bytes, and real photos in every accepted format
with bytes flipped, cut or inserted, to the real gateway under gunicorn.
No answer may be a 5xx, and the worker processes must be the same ones
afterwards (a crashed worker is replaced by gunicorn under a new pid).
"""

import io
import pathlib

import hypothesis
import pytest
import requests
from hypothesis import strategies as st
from PIL import Image

pytestmark = pytest.mark.e2e

EXAMPLES = 60
FORMATS = {
    "JPEG": {"quality": 80},
    "PNG": {},
    "GIF": {},
    "WEBP": {"quality": 70},
    "BMP": {},
    "TIFF": {"compression": "tiff_lzw"},
}


@pytest.fixture(scope="module")
def seeds(photo_dir):
    """Small real photos, one per accepted format."""
    with Image.open(photo_dir / "coffee.png") as image:
        small = image.convert("RGB").resize((120, 80))
    found = []
    for image_format, options in FORMATS.items():
        buffer = io.BytesIO()
        small.save(buffer, image_format, **options)
        found.append(buffer.getvalue())
    return found


def gateway_pids(gateway_url):
    """The pids of the gunicorn master and workers serving ``gateway_url``."""
    marker = f"DEEPCLASSIFY_BIND=127.0.0.1:{gateway_url.rsplit(':', 1)[1]}".encode()
    pids = set()
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


@st.composite
def mutated(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "zero-run"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[at : at + draw(st.integers(1, 256))] = b"\0" * 16
    return bytes(data)


def test_no_input_gets_a_5xx_or_kills_a_worker(gateway_url, seeds):
    before = gateway_pids(gateway_url)
    assert len(before) >= 2  # the master and its workers
    statuses = []

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(data=st.one_of(st.binary(max_size=2048), mutated(seeds)))
    def classify(data):
        response = requests.post(
            gateway_url + "/api/v1/classify",
            files={"image": ("photo.jpg", data)},
            timeout=60,
        )
        statuses.append(response.status_code)
        assert response.status_code in (200, 400, 413, 415, 422), response.text
        if response.status_code != 200:
            assert response.headers["Content-Type"] == "application/problem+json"

    classify()

    assert gateway_pids(gateway_url) == before
    assert requests.get(gateway_url + "/healthz", timeout=10).status_code == 200
    # Both kinds of outcome were reached, so the mutations are not all fatal.
    assert 200 in statuses
    assert set(statuses) - {200}
