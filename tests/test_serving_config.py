"""TensorFlow Serving's config files parse as the messages it reads."""

import pytest

from serving.config import (
    ConfigError,
    read_batching_config,
    read_model_config,
    read_monitoring_config,
)
from tools.stack import ROOT


def test_models_config_names_the_model():
    (model,) = read_model_config(ROOT / "serving" / "models.config")

    assert model.name == "inception_v3"
    assert model.base_path == "models/inception_v3"


def test_batching_config_parses():
    batching = read_batching_config(ROOT / "serving" / "batching.config")

    assert batching.max_batch_size.value >= 1
    assert batching.num_batch_threads.value >= 1
    # Padding would spend CPU on copies; the CPU graph takes any batch size.
    assert not batching.allowed_batch_sizes


def test_monitoring_config_parses():
    monitoring = read_monitoring_config(ROOT / "serving" / "monitoring.config")

    assert monitoring.prometheus_config.enable is True
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_unknown_field_is_a_config_error(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 4 }\nbatch_size_typo: 3\n")

    with pytest.raises(ConfigError, match="is not a BatchingParameters"):
        read_batching_config(path)


def test_models_config_labels_only_versions_it_serves():
    """TensorFlow Serving refuses labels on versions that are not loaded."""
    (model,) = read_model_config(ROOT / "serving" / "models.config")

    policy = model.model_version_policy
    assert policy.WhichOneof("policy_choice") == "specific"
    assert dict(model.version_labels) == {"stable": 1, "canary": 1}
    assert set(model.version_labels.values()) <= set(policy.specific.versions)
