"""Contract tests of the ``classifyImage`` action handler.

The app runs in-process against the real local model server; images come
from the loopback file server. Each case posts Hasura's documented action
payload and checks the status and the exact body (README, "Hasura").
"""

import hashlib
import sqlite3

import graphql
import pytest

from gateway import create_app
from tests.test_hasura_metadata import HASURA_SCALARS, METADATA
from tools.stack import free_port

SECRET = "correct horse battery staple"
HEADER = "X-DeepClassify-Action-Secret"
ENDPOINT = "/hasura/actions/classify"


@pytest.fixture
def app(model_server, tmp_path):
    app = create_app(
        {
            "MODEL_SERVER": model_server,
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
            "ACTION_SECRET": SECRET,
            "HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
        }
    )
    yield app
    app.extensions["history"].close()


def payload(url="", top_k=None, **changes):
    body = {
        "action": {"name": "classifyImage"},
        "input": {"url": url, "topK": top_k},
        "session_variables": {"x-hasura-role": "user", "x-hasura-user-id": "42"},
        "request_query": "mutation { classifyImage(url: $url) { history_id } }",
    }
    body.update(changes)
    return body


def hasura_error(message, code, status):
    return {"message": message, "extensions": {"code": code, "status": status}}


def output_fields(type_name):
    schema = graphql.build_schema(
        HASURA_SCALARS + (METADATA / "actions.graphql").read_text()
    )
    return set(schema.type_map[type_name].fields)


def test_right_secret_classifies_and_records(app, file_server, photos):
    base_url, _ = file_server
    url = f"{base_url}/chelsea.png?token=s3cret"
    client = app.test_client()
    body = payload(url, top_k=3, unknown_key={"ignored": True})
    body["action"]["extra"] = "ignored too"

    response = client.post(ENDPOINT, json=body, headers={HEADER: SECRET})

    assert response.status_code == 200
    answer = response.get_json()
    assert set(answer) == output_fields("ClassifyImageOutput")
    assert answer["recorded"] is True
    assert (
        answer["image_sha256"]
        == hashlib.sha256(photos["chelsea.png"].read_bytes()).hexdigest()
    )
    assert (answer["image_width"], answer["image_height"]) == (451, 300)
    assert answer["image_format"] == "PNG"
    assert answer["model_name"] == "inception_v3"
    assert answer["weights"] == "random"
    assert len(answer["predictions"]) == 3
    for item in answer["predictions"]:
        assert set(item) == output_fields("ClassifyImagePrediction")

    # The same code path as the REST API: the same classes for the same image.
    rest = client.post("/api/v1/classify", json={"url": url, "top_k": 3}).get_json()
    assert answer["predictions"] == rest["predictions"]
    assert answer["model_version"] == rest["model"]["version"]

    store = app.extensions["history"]
    assert store.flush(10)
    items = client.get("/api/v1/history?limit=2").get_json()["items"]
    assert [item["source"] for item in items] == ["url", "graphql-action"]
    row = items[1]
    assert row["id"] == answer["history_id"]
    assert (row["url_scheme"], row["url_path"]) == ("http", "/chelsea.png")
    assert row["url_host"] == base_url.removeprefix("http://")
    assert row["top_label"] == answer["predictions"][0]["label"]
    assert "requester_user_id" not in row
    # The requester is stored, though the public list does not show it.
    with sqlite3.connect(store.url.database) as connection:
        stored = connection.execute(
            "SELECT requester_role, requester_user_id FROM classifications "
            "WHERE source = 'graphql-action'"
        ).fetchall()
    assert stored == [("user", "42")]


@pytest.mark.parametrize(
    "headers",
    [{HEADER: "wrong"}, {}, {HEADER: SECRET + " "}, {HEADER: SECRET[:-1]}],
    ids=["wrong", "missing", "trailing-space", "prefix"],
)
def test_wrong_or_missing_secret_is_401(app, headers):
    response = app.test_client().post(
        ENDPOINT, json=payload("http://127.0.0.1/a.png"), headers=headers
    )

    assert response.status_code == 401
    assert response.get_json() == hasura_error(
        "the X-DeepClassify-Action-Secret header is missing or wrong",
        "unauthorized",
        401,
    )


def test_no_configured_secret_refuses_everything(model_server, tmp_path):
    app = create_app(
        {
            "MODEL_SERVER": model_server,
            "HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
        }
    )
    for headers in ({HEADER: ""}, {}, {HEADER: "anything"}):
        response = app.test_client().post(
            ENDPOINT, json=payload("http://127.0.0.1/a.png"), headers=headers
        )

        assert response.status_code == 403
        assert response.get_json() == hasura_error(
            "the classifyImage action is disabled: the gateway has no "
            "DEEPCLASSIFY_ACTION_SECRET setting",
            "forbidden",
            403,
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {k: v for k, v in payload().items() if k != "input"},
            'the payload needs an "input" object with a "url"',
        ),
        (payload(input=None), 'the payload needs an "input" object with a "url"'),
        (payload(input={}), 'the input needs a "url" string naming an image'),
        (payload(input={"url": 7}), 'the input needs a "url" string naming an image'),
        (
            payload(input={"url": "  "}),
            'the input needs a "url" string naming an image',
        ),
        (
            payload(action={"name": "deleteEverything"}),
            "this handler serves the action classifyImage; received 'deleteEverything'",
        ),
        (
            {"input": {"url": "http://127.0.0.1/a.png"}},
            "this handler serves the action classifyImage; received None",
        ),
        (
            payload("http://127.0.0.1/a.png", top_k=11),
            "topK must be from 1 to 10; received 11",
        ),
        (
            payload("http://127.0.0.1/a.png", top_k="many"),
            "topK must be a whole number from 1 to 10; received 'many'",
        ),
        (
            ["not", "an", "object"],
            "the body must be Hasura's action payload, a JSON object",
        ),
    ],
    ids=[
        "missing-input",
        "null-input",
        "missing-url",
        "url-not-string",
        "blank-url",
        "other-action",
        "no-action",
        "topk-too-large",
        "topk-not-number",
        "not-object",
    ],
)
def test_bad_payload_is_400(app, body, message):
    response = app.test_client().post(ENDPOINT, json=body, headers={HEADER: SECRET})

    assert response.status_code == 400
    assert response.get_json() == hasura_error(message, "bad-request", 400)


def test_unreachable_url_is_400_with_the_upstream_status(app):
    response = app.test_client().post(
        ENDPOINT,
        json=payload(f"http://127.0.0.1:{free_port()}/cat.png"),
        headers={HEADER: SECRET},
    )

    assert response.status_code == 400
    assert response.get_json() == hasura_error(
        "cannot connect to 127.0.0.1", "upstream-error", 502
    )


def test_refused_url_is_400(app):
    response = app.test_client().post(
        ENDPOINT,
        json=payload("http://10.1.2.3/cat.png"),
        headers={HEADER: SECRET},
    )

    assert response.status_code == 400
    assert response.get_json() == hasura_error(
        "host 10.1.2.3 resolves to a non-public address; such URLs are not fetched",
        "url-refused",
        400,
    )


def test_not_an_image_is_415(app, file_server):
    base_url, _ = file_server
    response = app.test_client().post(
        ENDPOINT, json=payload(f"{base_url}/notes.txt"), headers={HEADER: SECRET}
    )

    assert response.status_code == 415
    assert response.get_json() == hasura_error(
        "expected a JPEG, PNG, GIF, WebP, BMP or TIFF image; received plain text",
        "unsupported-media-type",
        415,
    )


def test_model_server_down_is_400_with_503(tmp_path, file_server):
    base_url, _ = file_server
    app = create_app(
        {
            "MODEL_SERVER": f"127.0.0.1:{free_port()}",
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
            "ACTION_SECRET": SECRET,
            "HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
        }
    )
    response = app.test_client().post(
        ENDPOINT, json=payload(f"{base_url}/coffee.png"), headers={HEADER: SECRET}
    )

    assert response.status_code == 400
    assert response.get_json() == hasura_error(
        "the model server is unavailable; try again shortly", "model-unavailable", 503
    )
