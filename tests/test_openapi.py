"""The OpenAPI description is served, and true of the app.

Schemathesis generates requests from ``gateway/openapi.json`` (a few dozen
per operation), sends them to the app built in-process against the
session's model server, and checks each answer: never a 5xx, a documented
status and content type, and a body matching its schema. Real successful
answers, which generated data rarely reaches, are checked against the
schema on their own.
"""

import io
import json

import hypothesis
import pytest
import schemathesis
from schemathesis import checks

from gateway import create_app
from gateway.openapi import SPEC_PATH

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def app(model_server):
    return create_app({"MODEL_SERVER": model_server})


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def described_operations():
    """``(path, method)`` of every operation in the description."""
    paths = json.loads(SPEC_PATH.read_text())["paths"]
    return [(path, method.upper()) for path in paths for method in paths[path]]


@pytest.mark.parametrize(("path", "method"), described_operations())
def test_answers_match_the_description(api_schema, path, method):
    operation = api_schema[path][method]

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def check(case):
        response = case.call()
        case.validate_response(
            response,
            checks=[
                checks.not_a_server_error,
                checks.status_code_conformance,
                checks.content_type_conformance,
                checks.response_schema_conformance,
            ],
        )

    check()


def test_served_description_is_the_file(app):
    response = app.test_client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.get_json() == json.loads(SPEC_PATH.read_text())


def test_every_route_is_described(app):
    described = set(json.loads(SPEC_PATH.read_text())["paths"])
    ui_routes = {"/", "/url", "/upload", "/static/<path:name>"}

    routes = {rule.rule for rule in app.url_map.iter_rules()} - ui_routes

    assert routes == described


def test_successful_answers_match_the_description(app, api_schema, photos):
    client = app.test_client()
    chelsea = photos["chelsea.png"].read_bytes()
    answers = {
        ("/api/v1/classify", "POST"): client.post(
            "/api/v1/classify", data={"image": (io.BytesIO(chelsea), "c.png")}
        ),
        ("/api/v1/classify/batch", "POST"): client.post(
            "/api/v1/classify/batch",
            data={"image": [(io.BytesIO(chelsea), "c.png"), (io.BytesIO(b""), "e")]},
        ),
        ("/api/v1/model", "GET"): client.get("/api/v1/model"),
        ("/readyz", "GET"): client.get("/readyz"),
    }

    for (path, method), response in answers.items():
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        assert api_schema[path][method].validate_response(response) is not False
