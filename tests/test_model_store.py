"""Version policies and ``ModelSpec`` resolution, without loading a model."""

import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import ServableNotFound
from serving.model_store import ModelStore, ModelVersion, State, select_versions


def policy(text):
    return text_format.Parse(
        text, model_server_config_pb2.ModelConfig()
    ).model_version_policy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {4}),
        ("model_version_policy { latest { num_versions: 2 } }", {3, 4}),
        ("model_version_policy { all {} }", {1, 3, 4}),
        ("model_version_policy { specific { versions: 1 versions: 2 } }", {1}),
    ],
    ids=["default", "latest-2", "all", "specific"],
)
def test_policy_selects_versions(text, expected):
    assert select_versions({1, 3, 4}, policy(text)) == expected


def store_with(available, labels):
    config = model_server_config_pb2.ModelConfig(name="m", base_path="/nowhere")
    config.version_labels.update(labels)
    store = ModelStore(config)
    for number in available:
        version = ModelVersion(number, None, state=State.AVAILABLE)
        store._versions[number] = version
    store._versions[9] = ModelVersion(9, None, state=State.LOADING)
    return store


def spec(**fields):
    model_spec = model_pb2.ModelSpec(name="m")
    if "version" in fields:
        model_spec.version.value = fields["version"]
    if "label" in fields:
        model_spec.version_label = fields["label"]
    return model_spec


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, 2), ({"version": 1}, 1), ({"label": "stable"}, 1), ({"label": "canary"}, 2)],
)
def test_spec_resolves_to_an_available_version(fields, expected):
    store = store_with({1, 2}, {"stable": 1, "canary": 2})

    assert store.resolve(spec(**fields)).version == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"version": 9}, "Servable not found for request: Specific(m, 9)"),
        ({"label": "next"}, "Servable not found for request: Specific(m, 9)"),
        ({"label": "beta"}, "Unrecognized servable version label: beta"),
    ],
    ids=["loading-version", "label-on-loading-version", "unknown-label"],
)
def test_spec_without_an_available_version_is_not_found(fields, message):
    store = store_with({1, 2}, {"stable": 1, "next": 9})

    with pytest.raises(ServableNotFound) as raised:
        store.resolve(spec(**fields))

    assert raised.value.message == message


def test_a_reread_config_updates_adds_and_drops_models():
    from serving.service import Models

    kept = store_with({1, 2}, {"stable": 1})
    dropped = store_with({1}, {})
    dropped.name = "gone"
    models = Models([kept, dropped])
    new_kept = model_server_config_pb2.ModelConfig(name="m", base_path="/nowhere")
    new_kept.version_labels["stable"] = 2
    added = model_server_config_pb2.ModelConfig(name="new", base_path="/elsewhere")

    models.update([new_kept, added], ModelStore)

    assert sorted(models.stores) == ["m", "new"]
    assert models.stores["m"] is kept
    assert kept.resolve(spec(label="stable")).version == 2
    assert models.stores["new"].base_path.as_posix() == "/elsewhere"
    assert [state for _, state, _ in dropped.statuses()] == [State.END, State.LOADING]


def test_a_call_to_an_unloaded_version_is_not_found():
    version = ModelVersion(3, None, state=State.AVAILABLE)
    version.unload()

    with pytest.raises(ServableNotFound) as raised:
        version.run("serving_default", {})

    assert raised.value.message == ("Servable not found: version 3 has been unloaded")
