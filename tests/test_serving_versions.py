"""Versions, labels, warmup and status on a model server of its own.

The server here watches a copy of the session's export (policy ``all``,
labels ``stable: 1`` and ``canary: 2``, no batching); the tests add
version folders to it while it runs, by copying version 1, and change its
config. They build on one another, in the order written.
"""

import os
import shutil
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from deepclassify import contract
from tests.conftest import running_model_server
from tools import stack

pytestmark = pytest.mark.e2e

State = get_model_status_pb2.ModelVersionStatus.State
LABELS = 'version_labels { key: "stable" value: 1 }\n'
LABELS += 'version_labels { key: "canary" value: 2 }\n'
POLICY = "model_version_policy { all {} }\n"


@pytest.fixture(scope="module")
def versions_base(model_base, tmp_path_factory):
    base = tmp_path_factory.mktemp("versions") / "inception_v3"
    base.mkdir()
    shutil.copytree(model_base / "1", base / "1")
    return base


@pytest.fixture(scope="module")
def versions_config(versions_base, tmp_path_factory):
    return stack.write_model_config(
        tmp_path_factory.mktemp("versions-config") / "models.config",
        versions_base,
        extra=POLICY + LABELS,
    )


@pytest.fixture(scope="module")
def versions_server(versions_config, log_dir):
    flags = [
        "--file_system_poll_wait_seconds=0.2",
        "--model_config_file_poll_wait_seconds=0.2",
    ]
    log_path = log_dir / "model-server-versions.log"
    with (
        running_model_server(versions_config, log_path, flags) as target,
        grpc.insecure_channel(target) as channel,
    ):
        yield (
            prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel),
        )


def add_version(base, number, change=None):
    """Copies version 1 to ``number`` atomically, as the export writes."""
    staging = base / f".copy-{number}"
    shutil.copytree(base / "1", staging)
    if change:
        change(staging)
    os.rename(staging, base / str(number))


def status(model_stub, **spec):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = contract.MODEL_NAME
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    response = model_stub.GetModelStatus(request, timeout=10)
    return {
        entry.version: (State.Name(entry.state), entry.status.error_message)
        for entry in response.model_version_status
    }


def watch_states(model_stub, version, until, timeout=120):
    """Polls GetModelStatus; returns the distinct states ``version`` went through."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status(model_stub).get(version, ("ABSENT", ""))[0]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in until:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"version {version} went through {seen} and no further")


def answered_version(predict_stub, photos, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = contract.MODEL_NAME
    request.model_spec.signature_name = contract.CLASSIFY_SIGNATURE
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    data = photos["chelsea.png"].read_bytes()
    request.inputs[contract.INPUT_IMAGE_BYTES].CopyFrom(
        tf.make_tensor_proto([data], dtype=tf.string, shape=[1])
    )
    return predict_stub.Predict(request, timeout=60).model_spec.version.value


def test_warmup_file_holds_real_requests_for_both_signatures(model_base, photo_dir):
    path = model_base / "1" / contract.WARMUP_FILE

    records = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(str(path))
    ]

    requests = [record.predict_log.request for record in records]
    assert [r.model_spec.signature_name for r in requests] == [
        "classify_images",
        "classify_images",
        "serving_default",
    ]
    files = [tf.make_ndarray(r.inputs["image_bytes"]).tolist() for r in requests[:2]]
    assert files == [
        [(photo_dir / "chelsea.png").read_bytes()],
        [
            (photo_dir / "coffee.png").read_bytes(),
            (photo_dir / "rocket.jpg").read_bytes(),
        ],
    ]
    assert tf.make_ndarray(requests[2].inputs["images"]).shape == (1, 299, 299, 3)


def test_first_version_warms_up_and_answers(versions_server, photos, log_dir):
    predict_stub, model_stub = versions_server

    assert status(model_stub) == {1: ("AVAILABLE", "")}
    assert answered_version(predict_stub, photos) == 1
    log = (log_dir / "model-server-versions.log").read_text()
    assert "version 1 AVAILABLE" in log
    assert "3 warmup requests" in log


def test_canary_label_waits_for_its_version(versions_server, photos):
    predict_stub, _ = versions_server

    with pytest.raises(grpc.RpcError) as raised:
        answered_version(predict_stub, photos, label="canary")

    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == (
        "Servable not found for request: Specific(inception_v3, 2)"
    )


def test_new_version_is_served_without_restart(versions_server, versions_base, photos):
    predict_stub, model_stub = versions_server

    add_version(versions_base, 2)
    states = watch_states(model_stub, 2, until=("AVAILABLE", "END"))

    assert states[-2:] == ["LOADING", "AVAILABLE"]
    assert answered_version(predict_stub, photos) == 2
    assert answered_version(predict_stub, photos, label="canary") == 2
    assert answered_version(predict_stub, photos, label="stable") == 1
    assert answered_version(predict_stub, photos, version=1) == 1
    assert status(model_stub, label="stable") == {1: ("AVAILABLE", "")}
    with pytest.raises(grpc.RpcError) as raised:
        answered_version(predict_stub, photos, label="beta")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "Unrecognized servable version label: beta"


def test_version_whose_warmup_fails_is_not_served(
    versions_server, versions_base, photos
):
    predict_stub, model_stub = versions_server

    def break_warmup(folder):
        record = prediction_log_pb2.PredictionLog()
        record.predict_log.request.model_spec.signature_name = "no_such_signature"
        with tf.io.TFRecordWriter(str(folder / contract.WARMUP_FILE)) as writer:
            writer.write(record.SerializeToString())

    add_version(versions_base, 3, change=break_warmup)
    states = watch_states(model_stub, 3, until=("AVAILABLE", "END"))

    assert states[-2:] == ["LOADING", "END"]
    assert status(model_stub, version=3)[3] == (
        "END",
        "ValueError: warmup record 0 names signature 'no_such_signature'; "
        "this version has classify_images, serving_default",
    )
    assert answered_version(predict_stub, photos) == 2


def test_changed_labels_apply_without_restart(
    versions_server, versions_base, versions_config, photos
):
    predict_stub, _ = versions_server

    stack.write_model_config(
        versions_config,
        versions_base,
        extra=POLICY + 'version_labels { key: "stable" value: 2 }\n',
    )
    deadline = time.monotonic() + 60
    while answered_version(predict_stub, photos, label="stable") != 2:
        assert time.monotonic() < deadline, "the new label was not applied"
        time.sleep(0.2)

    with pytest.raises(grpc.RpcError) as raised:
        answered_version(predict_stub, photos, label="canary")
    assert raised.value.details() == "Unrecognized servable version label: canary"
