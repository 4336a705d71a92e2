"""The gateway spreads its calls over model servers with ``round_robin``.

In Kubernetes the gateway dials the headless Service through DNS, which
answers with every model-server pod's address (see ``k8s/README.md``).
Here two local model servers stand behind one address-list target,
``ipv4:127.0.0.1:P1,127.0.0.1:P2``, which gRPC resolves to two addresses
as it would a DNS name. The servers hold the same export under different
version numbers, and every answer names its version, so the answers show
which server made each one.
"""

import collections
import shutil

import pytest
import requests

from tests.conftest import distinct_encodings, wait_for_available
from tools import stack

pytestmark = pytest.mark.e2e

CALLS = 12
VERSIONS = (1, 2)
"""The version number each of the two servers serves, in address order."""


@pytest.fixture(scope="module")
def two_model_servers(model_base, tmp_path_factory, log_dir):
    """Two local model servers; yields the address-list gRPC target."""
    (exported,) = [path for path in model_base.iterdir() if path.name.isdigit()]
    configs = []
    for version in VERSIONS:
        base = tmp_path_factory.mktemp(f"round-robin-{version}") / "inception_v3"
        shutil.copytree(exported, base / str(version))
        configs.append(stack.write_model_config(base.parent / "models.config", base))

    ports = [stack.free_port() for _ in VERSIONS]
    processes = [
        stack.start_model_server(
            port, config, log_dir / f"model-server-round-robin-{index}.log"
        )
        for index, (port, config) in enumerate(zip(ports, configs, strict=True))
    ]
    try:
        for port in ports:
            wait_for_available(f"127.0.0.1:{port}")
        yield "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def start_gateway(two_model_servers, log_dir):
    """Starts a one-worker gateway with an LB policy; yields a starter."""
    started = []

    def start(lb_policy):
        port = stack.free_port()
        process = stack.start_gateway(
            port,
            two_model_servers,
            log_dir / f"gateway-{lb_policy}.log",
            settings={"MODEL_LB_POLICY": lb_policy},
            workers=1,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        stack.wait_for_http(url + "/readyz", process)
        return url

    yield start
    for process in started:
        process.stop()


def versions_answering(url, photo):
    """Classifies the photo ``CALLS`` times; counts answers per version."""
    counts = collections.Counter()
    with requests.Session() as session:
        for data in distinct_encodings(photo, CALLS):
            response = session.post(
                url + "/api/v1/classify",
                files={"image": ("photo.jpg", data)},
                data={"top_k": 1},
                timeout=60,
            )
            assert response.status_code == 200, response.text
            assert response.json()["cached"] is False
            counts[response.json()["model"]["version"]] += 1

    return counts


def test_round_robin_reaches_both_model_servers(start_gateway, photos):
    url = start_gateway("round_robin")

    counts = versions_answering(url, photos["coffee.png"])

    # Calls alternate once both connections are up; the first one or two
    # may all go to the server that connected first.
    assert set(counts) == set(VERSIONS), counts
    assert min(counts.values()) >= CALLS // 2 - 2, counts


def test_pick_first_stays_on_the_first_address(start_gateway, photos):
    url = start_gateway("pick_first")

    counts = versions_answering(url, photos["coffee.png"])

    assert counts == {VERSIONS[0]: CALLS}
