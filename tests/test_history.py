"""The history store in-process: schema, migrations, writes, pages, errors.

Rows are recorded straight into the store here; the end-to-end tests
(``test_history_e2e.py``) record them by classifying photos.
"""

import datetime
import sqlite3
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from gateway import create_app, history
from tests.postgres import migrate
from tools.stack import free_port

PROBLEM = "application/problem+json"


def make_app(tmp_path, **settings):
    return create_app(
        {
            "MODEL_SERVER": f"127.0.0.1:{free_port()}",
            "HISTORY_SQLITE_PATH": str(tmp_path / "history.sqlite3"),
            **settings,
        }
    )


def sample_row(created_at, **changes):
    row = {
        "id": uuid.uuid4(),
        "created_at": created_at,
        "source": "url",
        "image_sha256": "ab" * 32,
        "image_width": 451,
        "image_height": 300,
        "url_scheme": "https",
        "url_host": "example.com",
        "url_path": "/cat.png",
        "model_name": "inception_v3",
        "model_version": 1,
        "weights": "random",
        "top_label": "tabby",
        "top_score": 0.5,
        "top5": [{"class_id": 281, "label": "tabby", "probability": 0.5}],
        "latency_ms": 12.5,
        "requester_role": "user",
        "requester_user_id": "42",
    }
    row.update(changes)
    return row


def public(row):
    """The row as ``GET /api/v1/history`` answers it."""
    return {
        **{name: row[name] for name in history.PUBLIC_COLUMNS},
        "id": str(row["id"]),
        "created_at": row["created_at"].isoformat(),
    }


def columns_of(engine):
    """``{name: (type family, nullable)}`` of the table in a database."""
    found = sa.inspect(engine).get_columns(history.TABLE.name)
    return {column["name"]: column["nullable"] for column in found}


def expected_columns():
    return {column.name: column.nullable for column in history.TABLE.columns}


T0 = datetime.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        (
            "https://example.com/cats/tabby.jpg?token=s3cret#top",
            ("https", "example.com", "/cats/tabby.jpg"),
        ),
        (
            "HTTP://Example.COM:8080/a.png?x=1",
            ("http", "example.com:8080", "/a.png"),
        ),
        ("http://[::1]:9000/a.png?sig=abc", ("http", "[::1]:9000", "/a.png")),
        ("https://example.com?only=query", ("https", "example.com", "/")),
        (None, (None, None, None)),
    ],
)
def test_split_url_keeps_no_query(url, parts):
    assert history.split_url(url) == parts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p@db:5432/h", "postgresql+psycopg://u:***@db:5432/h"),
        ("postgres://u@db/h", "postgresql+psycopg://u@db/h"),
        ("postgresql+psycopg://u@db/h", "postgresql+psycopg://u@db/h"),
        ("sqlite:////tmp/h.sqlite3", "sqlite:////tmp/h.sqlite3"),
    ],
)
def test_database_url(raw, expected):
    url = history.database_url({"DATABASE_URL": raw, "HISTORY_SQLITE_PATH": "x"})

    assert url.render_as_string(hide_password=True) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "not a url",
            "DATABASE_URL is not a database URL such as "
            "postgresql://user:password@host:5432/name",
        ),
        (
            "mysql://u@db/h",
            "DATABASE_URL must name a PostgreSQL or SQLite database; received 'mysql'",
        ),
    ],
)
def test_bad_database_url_fails_at_start(tmp_path, raw, message):
    with pytest.raises(ValueError) as raised:
        make_app(tmp_path, DATABASE_URL=raw)

    assert str(raised.value) == message


def test_migrations_up_down_up(postgres):
    url = postgres.create_database()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        migrate(url, "up")
        assert columns_of(engine) == expected_columns()

        migrate(url, "down")
        assert not sa.inspect(engine).has_table(history.TABLE.name)

        migrate(url, "up")
        assert columns_of(engine) == expected_columns()
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("classifications")}
        assert indexes == {index.name for index in history.INDEXES}
    finally:
        engine.dispose()


def test_postgres_and_sqlite_schemas_agree(postgres, tmp_path):
    """The migrated PostgreSQL table and the SQLite one have the same columns,
    types (by family), nullability and primary key."""
    url = postgres.create_database()
    migrate(url, "up")
    pg_engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    app = make_app(tmp_path)
    store = app.extensions["history"]
    store.record(sample_row(T0))
    assert store.flush(10)
    sqlite_engine = sa.create_engine(f"sqlite:///{tmp_path / 'history.sqlite3'}")

    families = {
        sa.Uuid: "uuid",
        sa.DateTime: "time",
        sa.Text: "text",
        sa.String: "text",
        sa.Integer: "integer",
        sa.Double: "float",
        sa.Float: "float",
        sa.JSON: "json",
    }

    def family(column_type):
        for base, name in families.items():
            if isinstance(column_type, base):
                return name
        return type(column_type).__name__

    def describe(engine):
        inspector = sa.inspect(engine)
        columns = {
            column["name"]: (family(column["type"]), column["nullable"])
            for column in inspector.get_columns("classifications")
        }
        return columns, inspector.get_pk_constraint("classifications")[
            "constrained_columns"
        ]

    try:
        pg_columns, pg_key = describe(pg_engine)
        sqlite_columns, sqlite_key = describe(sqlite_engine)
        # SQLite reports UUID as CHAR(32) and JSON as JSON; PostgreSQL as UUID
        # and JSONB: compare names, nullability and the families that both keep.
        assert pg_key == sqlite_key == ["id"]
        assert {k: v[1] for k, v in pg_columns.items()} == {
            k: v[1] for k, v in sqlite_columns.items()
        }
        assert pg_columns["id"][0] == "uuid"
        assert pg_columns["created_at"][0] == "time"
        assert sqlite_columns["created_at"][0] == "time"
        for name in ("image_width", "image_height", "model_version"):
            assert pg_columns[name][0] == sqlite_columns[name][0] == "integer"
        for name in ("top_score", "latency_ms"):
            assert pg_columns[name][0] == sqlite_columns[name][0] == "float"
        assert pg_columns["top5"][0] == sqlite_columns["top5"][0] == "json"
    finally:
        pg_engine.dispose()
        sqlite_engine.dispose()
        store.close()


def test_history_pages_newest_first(tmp_path):
    app = make_app(tmp_path)
    store = app.extensions["history"]
    rows = [sample_row(T0 + datetime.timedelta(seconds=n)) for n in range(5)]
    # Two rows at the same instant: the id breaks the tie, and no page loses one.
    rows.append(sample_row(rows[-1]["created_at"], source="upload", url_scheme=None))
    for row in rows:
        store.record(row)
    assert store.flush(10)
    newest_first = sorted(
        rows, key=lambda row: (row["created_at"], str(row["id"])), reverse=True
    )
    client = app.test_client()

    first = client.get("/api/v1/history?limit=4")
    assert first.status_code == 200
    assert first.get_json() == {
        "items": [public(row) for row in newest_first[:4]],
        "next_before": str(newest_first[3]["id"]),
    }

    second = client.get(f"/api/v1/history?limit=4&before={newest_first[3]['id']}")
    assert second.status_code == 200
    assert second.get_json() == {
        "items": [public(row) for row in newest_first[4:]],
        "next_before": None,
    }
    store.close()


def test_empty_history(tmp_path):
    app = make_app(tmp_path)
    response = app.test_client().get("/api/v1/history")

    assert response.status_code == 200
    assert response.get_json() == {"items": [], "next_before": None}
    app.extensions["history"].close()


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("limit=0", "limit must be a whole number from 1 to 100; received '0'"),
        ("limit=101", "limit must be a whole number from 1 to 100; received '101'"),
        ("limit=ten", "limit must be a whole number from 1 to 100; received 'ten'"),
        ("limit=-1", "limit must be a whole number from 1 to 100; received '-1'"),
        (
            "before=yesterday",
            "before must be the id of a classification (a UUID, as answered in "
            "next_before); received 'yesterday'",
        ),
        (
            "before=00000000-0000-0000-0000-000000000000",
            "before must be the id of a classification in the history; no "
            "classification has id 00000000-0000-0000-0000-000000000000",
        ),
    ],
)
def test_bad_history_parameters_are_400(tmp_path, query, detail):
    app = make_app(tmp_path)
    response = app.test_client().get(f"/api/v1/history?{query}")

    assert response.status_code == 400
    assert response.content_type == PROBLEM
    assert response.get_json() == {
        "type": "https://deepclassify.dev/problems/bad-request",
        "title": "Bad request",
        "status": 400,
        "detail": detail,
    }
    app.extensions["history"].close()


def test_unreachable_database_is_counted_and_history_is_503(tmp_path):
    app = make_app(
        tmp_path,
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/none",
    )
    store = app.extensions["history"]
    recorded = [store.record(sample_row(T0)) for _ in range(3)]

    assert store.flush(30)
    assert [item.wait(0) for item in recorded] == [False, False, False]
    stats = store.stats()
    assert (stats["written"], stats["failed"], stats["dropped"]) == (0, 3, 0)
    response = app.test_client().get("/api/v1/history")
    assert response.status_code == 503
    assert response.get_json() == {
        "type": "https://deepclassify.dev/problems/history-unavailable",
        "title": "History unavailable",
        "status": 503,
        "detail": "the classification history cannot be read right now; try "
        "again shortly",
    }
    store.close()


def test_full_queue_drops_and_counts(tmp_path):
    """While another process holds SQLite's write lock, the writer waits; rows
    beyond the queue's room are dropped and counted, the rest are written."""
    path = tmp_path / "history.sqlite3"
    app = make_app(
        tmp_path, HISTORY_QUEUE_SIZE=2, HISTORY_SQLITE_BUSY_TIMEOUT_SECONDS=30.0
    )
    store = app.extensions["history"]
    store.record(sample_row(T0))
    assert store.flush(10)

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    # The writer takes the first row alone and blocks on the lock with it;
    # recorded while it was still gathering a batch, a second row would go
    # with it and leave room for one more in the queue.
    store.record(sample_row(T0 + datetime.timedelta(seconds=1)))
    deadline = time.monotonic() + 10
    while not store._queue.empty():
        assert time.monotonic() < deadline, "the writer never took the first row"
        time.sleep(0.01)
    time.sleep(0.5)
    for n in range(2, 11):
        store.record(sample_row(T0 + datetime.timedelta(seconds=n)))
    stats = store.stats()
    locker.execute("COMMIT")
    locker.close()
    assert store.flush(30)

    final = store.stats()
    assert stats["dropped"] >= 7
    assert final["written"] + final["dropped"] == 11
    assert final["failed"] == 0
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute("SELECT count(*) FROM classifications").fetchone()
    assert count == final["written"]
    store.close()


def test_concurrent_records_from_threads_all_land(tmp_path):
    app = make_app(tmp_path)
    store = app.extensions["history"]

    def record_many(offset):
        for n in range(50):
            store.record(sample_row(T0 + datetime.timedelta(milliseconds=offset + n)))

    threads = [threading.Thread(target=record_many, args=(k * 100,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert store.flush(30)
    assert store.stats()["written"] == 400
    page = app.test_client().get("/api/v1/history?limit=100").get_json()
    assert len(page["items"]) == 100
    assert page["next_before"] is not None
    store.close()


def test_close_writes_what_is_queued(tmp_path):
    app = make_app(tmp_path)
    store = app.extensions["history"]
    for n in range(20):
        store.record(sample_row(T0 + datetime.timedelta(seconds=n)))
    store.close()

    with sqlite3.connect(tmp_path / "history.sqlite3") as connection:
        (count,) = connection.execute("SELECT count(*) FROM classifications").fetchone()
    assert count == 20


def test_page_has_the_history_section(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()

    with client.get("/") as response:
        page = response.get_data(as_text=True)
    with client.get("/static/history.js") as response:
        status, script = response.status_code, response.get_data(as_text=True)

    assert '<section id="history"' in page
    assert '<script type="module" src="/static/history.js"></script>' in page
    assert status == 200
    assert "/api/v1/history?" in script
    for element in ("history-list", "history-status", "history-more"):
        assert f'id="{element}"' in page
