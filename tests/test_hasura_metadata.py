"""The Hasura project in ``hasura/``: files that parse and agree.

Checks what ``hasura metadata apply`` would otherwise find wrong only on a
live Hasura: every YAML file parses, every ``!include`` resolves, every
column a permission names exists in the migrated table, ``actions.graphql``
parses and agrees with ``actions.yaml`` and with the gateway's handler.
"""

import pathlib

import graphql
import pytest
import sqlalchemy as sa
import yaml

from gateway import create_app, hasura_action
from gateway.config import ENV_PREFIX
from tests.postgres import migrate, migration_folders
from tools import stack

HASURA = stack.ROOT / "hasura"
METADATA = HASURA / "metadata"
INCLUDE = "!include "
# Scalars Hasura brings from PostgreSQL, usable in action types.
HASURA_SCALARS = "scalar uuid\ntype Query { _unused: Boolean }\n"
ACTION_HANDLER = "{{ACTION_BASE_URL}}/hasura/actions/classify"


def load(path):
    return yaml.safe_load(pathlib.Path(path).read_text())


def resolve(value, folder):
    """Replaces every ``"!include file"`` string by that file's content."""
    if isinstance(value, str) and value.startswith(INCLUDE):
        path = folder / value[len(INCLUDE) :].strip()
        assert path.is_file(), f"{value!r} in {folder} names no file"
        return resolve(load(path), path.parent)
    if isinstance(value, list):
        return [resolve(item, folder) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item, folder) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def databases():
    path = METADATA / "databases" / "databases.yaml"
    return resolve(load(path), path.parent)


@pytest.fixture(scope="module")
def migrated_columns(postgres):
    url = postgres.create_database()
    migrate(url, "up")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        inspector = sa.inspect(engine)
        return {
            table: {column["name"] for column in inspector.get_columns(table)}
            for table in inspector.get_table_names(schema="public")
        }
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def actions_schema():
    text = (METADATA / "actions.graphql").read_text()
    return graphql.build_schema(HASURA_SCALARS + text)


@pytest.mark.parametrize(
    "path",
    sorted(HASURA.rglob("*.yaml")),
    ids=lambda path: str(path.relative_to(HASURA)),
)
def test_yaml_parses(path):
    assert load(path) is not None


def test_project_versions():
    config = load(HASURA / "config.yaml")

    assert config["version"] == 3
    assert config["metadata_directory"] == "metadata"
    assert load(METADATA / "version.yaml") == {"version": 3}


def test_migrations_are_named_and_paired():
    folders = migration_folders()

    assert folders
    for folder in folders:
        stamp, _, name = folder.name.partition("_")
        assert stamp.isdigit() and len(stamp) == 13, folder.name
        assert name, folder.name
        assert {path.name for path in folder.iterdir()} == {"up.sql", "down.sql"}


def test_every_include_resolves(databases):
    # resolve() asserts each file exists; nothing unresolved may remain.
    assert INCLUDE not in repr(databases)
    assert [source["name"] for source in databases] == ["default"]
    tables = databases[0]["tables"]
    assert [entry["table"] for entry in tables] == [
        {"name": "classifications", "schema": "public"}
    ]


def filter_columns(condition):
    """Column names a boolean expression of Hasura's compares."""
    names = set()
    for key, value in condition.items():
        if key in ("_and", "_or"):
            for part in value:
                names |= filter_columns(part)
        elif key == "_not":
            names |= filter_columns(value)
        else:
            names.add(key)
    return names


def test_permissions_name_migrated_columns(databases, migrated_columns):
    for entry in databases[0]["tables"]:
        table = entry["table"]["name"]
        assert table in migrated_columns
        roles = set()
        for permission in entry["select_permissions"]:
            roles.add(permission["role"])
            columns = set(permission["permission"]["columns"])
            used = filter_columns(permission["permission"]["filter"])
            assert columns <= migrated_columns[table], permission["role"]
            assert used <= migrated_columns[table], permission["role"]
        assert roles == {"anonymous", "user"}


def test_anonymous_sees_no_requester_and_user_sees_own_rows(databases):
    permissions = {
        item["role"]: item["permission"]
        for item in databases[0]["tables"][0]["select_permissions"]
    }

    assert not {"requester_role", "requester_user_id"} & set(
        permissions["anonymous"]["columns"]
    )
    assert permissions["user"]["filter"] == {
        "requester_user_id": {"_eq": "X-Hasura-User-Id"}
    }


def test_anonymous_columns_are_the_gateway_public_columns(databases):
    from gateway.history import PUBLIC_COLUMNS

    anonymous = databases[0]["tables"][0]["select_permissions"][0]
    assert anonymous["role"] == "anonymous"
    assert anonymous["permission"]["columns"] == list(PUBLIC_COLUMNS)


def test_actions_graphql_agrees_with_actions_yaml(actions_schema):
    actions = load(METADATA / "actions.yaml")
    mutation = actions_schema.mutation_type

    assert [action["name"] for action in actions["actions"]] == list(mutation.fields)
    declared = {item["name"] for item in actions["custom_types"]["objects"]}
    defined = {
        name
        for name, kind in actions_schema.type_map.items()
        if isinstance(kind, graphql.GraphQLObjectType)
        and not name.startswith("__")
        and name not in ("Query", "Mutation")
    }
    assert declared == defined
    for kind in ("input_objects", "enums", "scalars"):
        assert actions["custom_types"][kind] == []


def test_classify_image_signature(actions_schema):
    field = actions_schema.mutation_type.fields["classifyImage"]

    assert {name: str(arg.type) for name, arg in field.args.items()} == {
        "url": "String!",
        "topK": "Int",
    }
    assert str(field.type) == "ClassifyImageOutput"


def test_relationship_maps_output_to_history_row(actions_schema, migrated_columns):
    objects = {
        item["name"]: item
        for item in load(METADATA / "actions.yaml")["custom_types"]["objects"]
    }
    (relationship,) = objects["ClassifyImageOutput"]["relationships"]
    output = actions_schema.type_map["ClassifyImageOutput"]

    assert relationship["type"] == "object"
    assert relationship["source"] == "default"
    table = relationship["remote_table"]
    assert table == {"name": "classifications", "schema": "public"}
    for field, column in relationship["field_mapping"].items():
        assert field in output.fields
        assert column in migrated_columns[table["name"]]
    assert relationship["field_mapping"] == {"history_id": "id"}
    assert str(output.fields["history_id"].type) == "uuid!"


def test_handler_and_secret_match_the_gateway():
    (action,) = load(METADATA / "actions.yaml")["actions"]
    definition = action["definition"]
    app = create_app({"MODEL_SERVER": f"127.0.0.1:{stack.free_port()}"})
    rules = {rule.rule: rule.methods for rule in app.url_map.iter_rules()}

    assert definition["kind"] == "synchronous"
    assert definition["handler"] == ACTION_HANDLER
    assert "POST" in rules[ACTION_HANDLER.removeprefix("{{ACTION_BASE_URL}}")]
    assert definition["headers"] == [
        {
            "name": hasura_action.SECRET_HEADER,
            "value_from_env": ENV_PREFIX + "ACTION_SECRET",
        }
    ]
    assert {item["role"] for item in action["permissions"]} == {"anonymous", "user"}
