"""History end to end: gunicorn gateways classify photos into PostgreSQL
(migrated with the Hasura migrations) and SQLite, and the rows are found.

Also: 200 classifications at concurrency 8 leave exactly 200 rows, even
when the gateway is stopped right after (the queue is flushed at exit); and
with PostgreSQL stopped mid-way every classification still answers 200 and
the failed rows are counted.
"""

import concurrent.futures
import hashlib
import json
import sqlite3
import threading
import time
import uuid

import psycopg
import pytest
import requests

from tests.postgres import migrate
from tools import stack

pytestmark = pytest.mark.e2e

SECRET = "e2e-action-secret"
LOAD = 200
CONCURRENCY = 8
# Classifications of the stopped-database test; the database stops halfway.
STOPPED_LOAD = 80


class Backend:
    """One history database: the gateway setting that names it, and a way to
    read its rows directly."""

    def __init__(self, kind, tmp_path, postgres):
        self.kind = kind
        if kind == "postgresql":
            self.url = postgres.create_database()
            migrate(self.url, "up")
            self.settings = {"DATABASE_URL": self.url}
        else:
            self.path = tmp_path / "history.sqlite3"
            self.settings = {"HISTORY_SQLITE_PATH": str(self.path)}

    def rows(self):
        query = (
            "SELECT id, source, image_sha256, image_width, image_height, "
            "url_scheme, url_host, url_path, model_name, model_version, weights, "
            "top_label, top_score, top5, requester_role, requester_user_id "
            "FROM classifications ORDER BY created_at"
        )
        if self.kind == "postgresql":
            with psycopg.connect(self.url) as connection:
                found = connection.execute(query).fetchall()
            return [(str(row[0]), *row[1:13], row[13], *row[14:]) for row in found]
        with sqlite3.connect(self.path) as connection:
            found = connection.execute(query).fetchall()
        # SQLite keeps a UUID as 32 hex digits.
        return [
            (str(uuid.UUID(row[0])), *row[1:13], json.loads(row[13]), *row[14:])
            for row in found
        ]

    def count(self):
        return len(self.rows())


def start(model_server, log_dir, name, settings, workers=2):
    port = stack.free_port()
    process = stack.start_gateway(
        port,
        model_server,
        log_dir / f"gateway-{name}.log",
        settings={
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
            "ACTION_SECRET": SECRET,
            # The machine may be busy: these tests are about the history, so
            # a slow inference must not turn into a 504 here.
            "MODEL_DEADLINE_SECONDS": 120.0,
            **settings,
        },
        workers=workers,
    )
    url = f"http://127.0.0.1:{port}"
    stack.wait_for_http(url + "/readyz", process)
    return process, url


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(request, tmp_path):
    postgres = (
        request.getfixturevalue("postgres") if request.param == "postgresql" else None
    )
    return Backend(request.param, tmp_path, postgres)


def test_classifications_are_recorded(
    backend, model_server, log_dir, file_server, photos
):
    base_url, _ = file_server
    process, url = start(
        model_server, log_dir, f"history-{backend.kind}", backend.settings
    )
    try:
        answers = []
        for name in ("chelsea.png", "coffee.png"):
            with photos[name].open("rb") as image:
                response = requests.post(
                    url + "/api/v1/classify", files={"image": image}, timeout=60
                )
            assert response.status_code == 200
            answers.append((name, response.json(), None))
        for name in ("astronaut.png", "rocket.jpg"):
            image_url = f"{base_url}/{name}?token=s3cret&sig=abc"
            response = requests.post(
                url + "/api/v1/classify", json={"url": image_url}, timeout=60
            )
            assert response.status_code == 200
            answers.append((name, response.json(), image_url))
        action = requests.post(
            url + "/hasura/actions/classify",
            json={
                "action": {"name": "classifyImage"},
                "input": {"url": f"{base_url}/chelsea.png?x=1", "topK": 2},
                "session_variables": {
                    "x-hasura-role": "user",
                    "x-hasura-user-id": "user-7",
                },
            },
            headers={"X-DeepClassify-Action-Secret": SECRET},
            timeout=60,
        )
        assert action.status_code == 200
        assert action.json()["recorded"] is True
        batch = requests.post(
            url + "/api/v1/classify/batch",
            json={"urls": [f"{base_url}/coffee.png?a=1", f"{base_url}/notes.txt"]},
            timeout=60,
        )
        assert batch.status_code == 200
        assert [item["status"] for item in batch.json()["results"]] == [200, 415]

        assert wait_for(lambda: backend.count() == 6)
        rows = backend.rows()
        listed = requests.get(url + "/api/v1/history", timeout=10).json()
    finally:
        process.stop()

    host = base_url.removeprefix("http://")
    for row, (name, answer, image_url) in zip(rows, answers, strict=False):
        top5 = [
            {key: item[key] for key in ("class_id", "label", "probability")}
            for item in answer["predictions"]
        ]
        assert row[1:] == (
            "url" if image_url else "upload",
            hashlib.sha256(photos[name].read_bytes()).hexdigest(),
            answer["image"]["width"],
            answer["image"]["height"],
            "http" if image_url else None,
            host if image_url else None,
            f"/{name}" if image_url else None,
            "inception_v3",
            answer["model"]["version"],
            "random",
            answer["predictions"][0]["label"],
            answer["predictions"][0]["probability"],
            top5,
            None,
            None,
        )
    action_row = rows[4]
    assert action_row[0] == action.json()["history_id"]
    assert action_row[1] == "graphql-action"
    assert action_row[5:8] == ("http", host, "/chelsea.png")
    assert action_row[14:] == ("user", "user-7")
    # A batch records each image it answered, and only those.
    assert rows[5][1] == "url"
    assert rows[5][5:8] == ("http", host, "/coffee.png")
    # Nothing of a query string is stored anywhere.
    assert "s3cret" not in repr(rows)

    assert [item["id"] for item in listed["items"]] == [row[0] for row in rows[::-1]]
    assert listed["next_before"] is None


def classify_many(url, image_bytes, count=LOAD, on_each=None):
    """Uploads one photo ``count`` times, ``CONCURRENCY`` at a time."""

    def one(_):
        response = requests.post(
            url + "/api/v1/classify",
            files={"image": ("coffee.png", image_bytes)},
            timeout=120,
        )
        if on_each:
            on_each()
        return response.status_code

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        return list(pool.map(one, range(count)))


def test_load_leaves_exactly_one_row_each(backend, model_server, log_dir, photos):
    """The gateway is stopped as soon as the last answer arrives: rows still
    queued then are written at exit, so the count is exact."""
    process, url = start(
        model_server, log_dir, f"load-{backend.kind}", backend.settings
    )
    try:
        statuses = classify_many(url, photos["coffee.png"].read_bytes())
    finally:
        process.stop()

    assert statuses == [200] * LOAD
    assert backend.count() == LOAD


def test_database_stopped_midway(postgres, model_server, log_dir, photos):
    backend = Backend("postgresql", None, postgres)
    # One worker, so that its counts are all the counts.
    process, url = start(
        model_server, log_dir, "postgres-stopped", backend.settings, workers=1
    )
    answered = []
    lock = threading.Lock()

    def on_each():
        with lock:
            answered.append(True)
            if len(answered) == STOPPED_LOAD // 2:
                postgres.stop()

    try:
        statuses = classify_many(
            url, photos["coffee.png"].read_bytes(), STOPPED_LOAD, on_each
        )
        assert wait_for(
            lambda: (
                requests.get(url + "/api/v1/history/status", timeout=10).json()[
                    "queued"
                ]
                == 0
            )
        )
        stats = requests.get(url + "/api/v1/history/status", timeout=10).json()
        unavailable = requests.get(url + "/api/v1/history", timeout=30)
    finally:
        process.stop()
        postgres.start()

    assert statuses == [200] * STOPPED_LOAD
    assert stats["backend"] == "postgresql"
    assert stats["failed"] >= 1
    assert stats["dropped"] == 0
    assert stats["written"] + stats["failed"] == STOPPED_LOAD
    assert unavailable.status_code == 503
    assert unavailable.json()["detail"] == (
        "the classification history cannot be read right now; try again shortly"
    )
    assert backend.count() == stats["written"]
