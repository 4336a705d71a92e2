"""Prometheus metrics of the gateway, served at ``GET /metrics``.

Request counts by route and status, request latency by route, and the
latency of each stage of a classification (fetch, decode, inference),
plus cache look-ups by result.

Under gunicorn each worker is a process of its own, so the metrics use
prometheus-client's multiprocess mode: ``gateway/gunicorn.conf.py`` sets
``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before any worker imports
this module, and marks a worker's files dead when it exits. Without that
variable (tests in-process, ``flask run``) the process's own registry is
served.
"""

import os

import flask
import prometheus_client
from prometheus_client import multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Latency buckets in seconds, from a cache hit to a slow URL fetch.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = prometheus_client.Counter(
    "deepclassify_http_requests",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = prometheus_client.Histogram(
    "deepclassify_http_request_duration_seconds",
    "Time from receiving a request to answering it, by route.",
    ["route"],
    buckets=BUCKETS,
)
STAGE_SECONDS = prometheus_client.Histogram(
    "deepclassify_stage_duration_seconds",
    "Time of each stage of a classification: fetch, decode, inference.",
    ["stage"],
    buckets=BUCKETS,
)
CACHE_LOOKUPS = prometheus_client.Counter(
    "deepclassify_cache_lookups",
    "Answer cache look-ups, by result (hit or miss).",
    ["result"],
)

blueprint = flask.Blueprint("metrics", __name__)


def record_request(method, route, status, seconds):
    """Counts one answered request and its latency."""
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(route).observe(seconds)


def record_stage(stage, seconds):
    """Records the latency of one stage of a classification."""
    STAGE_SECONDS.labels(stage).observe(seconds)


def record_cache(hit):
    """Counts one cache look-up."""
    CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()


@blueprint.get("/metrics")
def metrics():
    """Serves the metrics in Prometheus' text format."""
    if os.environ.get(MULTIPROC_ENV):
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY

    return flask.Response(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
