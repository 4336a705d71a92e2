"""Serves the gateway's OpenAPI 3 description, ``gateway/openapi.json``.

The file is written by hand and kept true by a schemathesis run in the
tests (``tests/test_openapi.py``); a route added without it fails there.
"""

import functools
import pathlib

import flask

SPEC_PATH = pathlib.Path(__file__).with_name("openapi.json")

blueprint = flask.Blueprint("openapi", __name__)


@functools.cache
def _spec_text():
    return SPEC_PATH.read_text(encoding="utf-8")


@blueprint.get("/api/v1/openapi.json")
def openapi():
    """Serves the OpenAPI description of this API."""
    return flask.Response(_spec_text(), mimetype="application/json")
