"""The history of classifications: one row per answer, written off the path.

Every classification the gateway answers is recorded in the table
``classifications``: when, how the image came (``upload``, ``url``, or
``graphql-action`` for the Hasura action), the image's SHA-256 and size,
the URL's scheme, host and path (never its query string or fragment, which
may carry tokens), the model's name, version and weights, the top class and
its probability, the five best classes as JSON, the latency, and the role
and user id Hasura passed, if any. No image bytes are stored.

Where: PostgreSQL when the ``DATABASE_URL`` setting is set (the Hasura
deployment's database), otherwise an SQLite file at ``HISTORY_SQLITE_PATH``
so history works on one machine with no set-up. Both go through SQLAlchemy
Core and the one ``TABLE`` below. The PostgreSQL schema is the Hasura
migrations in ``hasura/migrations/default/`` (the gateway never changes a
PostgreSQL schema; apply them with ``hasura migrate apply``); the SQLite
file is created from ``TABLE`` on first use. A test checks that the two
agree column by column.

Writing never slows or fails a classification: ``record_answer`` puts the
row on a bounded queue and returns; a background thread per worker process
writes queued rows in batches. When the queue is full the row is dropped
and counted; a database error is logged and counted. The counts are in
``HistoryStore.stats()``, at ``GET /api/v1/history/status`` (per worker
process) and in the Prometheus counter ``deepclassify_history_rows_total``.
The queue is flushed when the worker exits normally; a worker killed with
SIGKILL loses the rows still queued (at most ``HISTORY_QUEUE_SIZE``).

Each gunicorn worker opens its own engine and thread after the fork, as
``gateway.model_client`` does with its channel. SQLite is opened in WAL
mode with a busy timeout, so several workers can share the file.
"""

import atexit
import dataclasses
import datetime
import logging
import os
import pathlib
import queue
import threading
import urllib.parse
import uuid

import flask
import prometheus_client
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from gateway.errors import BadRequest, HistoryUnavailable

log = logging.getLogger(__name__)

SOURCES = ("upload", "url", "graphql-action")
"""How an image came: uploaded, fetched by URL, or through the Hasura
action (which fetches by URL too, on behalf of a Hasura session)."""

TOP_CLASSES = 5
"""Classes kept in ``top5`` (fewer when the request's ``top_k`` is smaller)."""

PUBLIC_COLUMNS = (
    "id",
    "created_at",
    "source",
    "image_sha256",
    "image_width",
    "image_height",
    "url_scheme",
    "url_host",
    "url_path",
    "model_name",
    "model_version",
    "weights",
    "top_label",
    "top_score",
    "top5",
    "latency_ms",
)
"""Columns ``GET /api/v1/history`` answers: all but the requester's role
and user id, as Hasura's ``anonymous`` role sees them."""

ROWS = prometheus_client.Counter(
    "deepclassify_history_rows",
    "History rows by outcome: written, failed (database error) or dropped "
    "(queue full).",
    ["outcome"],
)

METADATA = sa.MetaData()
TABLE = sa.Table(
    "classifications",
    METADATA,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("image_sha256", sa.Text, nullable=False),
    sa.Column("image_width", sa.Integer, nullable=False),
    sa.Column("image_height", sa.Integer, nullable=False),
    sa.Column("url_scheme", sa.Text),
    sa.Column("url_host", sa.Text),
    sa.Column("url_path", sa.Text),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.BigInteger, nullable=False),
    sa.Column("weights", sa.Text, nullable=False),
    sa.Column("top_label", sa.Text, nullable=False),
    sa.Column("top_score", sa.Double, nullable=False),
    sa.Column(
        "top5", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
    ),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("requester_role", sa.Text),
    sa.Column("requester_user_id", sa.Text),
    sa.CheckConstraint(
        "source IN ({})".format(", ".join(f"'{name}'" for name in SOURCES)),
        name="classifications_source_check",
    ),
)
INDEXES = (
    sa.Index(
        "classifications_created_at_idx", TABLE.c.created_at.desc(), TABLE.c.id.desc()
    ),
    sa.Index(
        "classifications_user_idx",
        TABLE.c.requester_user_id,
        TABLE.c.created_at.desc(),
        sqlite_where=TABLE.c.requester_user_id.isnot(None),
        postgresql_where=TABLE.c.requester_user_id.isnot(None),
    ),
)

_STOP = object()


@dataclasses.dataclass
class _Entry:
    row: dict
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    written: bool = False


@dataclasses.dataclass(frozen=True)
class Recorded:
    """A row handed to the history: its id, and a way to wait for it."""

    id: uuid.UUID
    entry: object

    def wait(self, timeout):
        """Waits until the row is written or has failed.

        Returns:
            True when the row is in the database, False when it failed, was
            dropped, or is still queued after ``timeout`` seconds.
        """
        if self.entry is None:
            return False
        self.entry.done.wait(timeout)
        return self.entry.written


def database_url(settings):
    """The SQLAlchemy URL of the history database from the settings.

    ``postgres://`` and ``postgresql://`` URLs (as Hasura and libpq take
    them) are given the psycopg driver.

    Raises:
        ValueError: the URL does not parse, or names another database.
    """
    raw = settings["DATABASE_URL"].strip()
    if not raw:
        path = pathlib.Path(settings["HISTORY_SQLITE_PATH"]).resolve()
        return sa.engine.URL.create("sqlite", database=str(path))

    try:
        url = sa.engine.make_url(raw)
    except sa.exc.ArgumentError as error:
        raise ValueError(
            "DATABASE_URL is not a database URL such as "
            "postgresql://user:password@host:5432/name"
        ) from error
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        raise ValueError(
            "DATABASE_URL must name a PostgreSQL or SQLite database; "
            f"received {url.get_backend_name()!r}"
        )

    return url


class HistoryStore:
    """Writes history rows in the background and reads pages of them.

    Args:
        url: the SQLAlchemy URL (see ``database_url``).
        queue_size: rows waiting to be written, at most; more are dropped.
        batch_size: rows written in one transaction, at most.
        connect_timeout: seconds to connect to PostgreSQL.
        busy_timeout: seconds SQLite waits for another writer's lock.
    """

    def __init__(self, url, queue_size, batch_size, connect_timeout, busy_timeout):
        self.url = url
        self.backend = url.get_backend_name()
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.connect_timeout = connect_timeout
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._pid = None
        self._engine = None
        self._queue = None
        self._thread = None
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._counts = {}

    @classmethod
    def from_config(cls, settings):
        """Builds the store from the gateway's settings; opens nothing."""
        return cls(
            database_url(settings),
            queue_size=settings["HISTORY_QUEUE_SIZE"],
            batch_size=settings["HISTORY_BATCH_SIZE"],
            connect_timeout=settings["HISTORY_CONNECT_TIMEOUT_SECONDS"],
            busy_timeout=settings["HISTORY_SQLITE_BUSY_TIMEOUT_SECONDS"],
        )

    def _ensure_open(self):
        # Runs in each worker after the fork: an engine or a thread from
        # the parent would be unusable there, so they are simply forgotten.
        with self._lock:
            if self._pid == os.getpid():
                return
            self._engine = self._create_engine()
            self._queue = queue.Queue(self.queue_size)
            self._pending = 0
            self._counts = {"written": 0, "failed": 0, "dropped": 0}
            self._schema_ready = self.backend != "sqlite"
            self._thread = threading.Thread(
                target=self._run,
                args=(self._queue,),
                name="history-writer",
                daemon=True,
            )
            self._thread.start()
            self._pid = os.getpid()
            atexit.register(self.close)
        log.info("history in %s (%s)", self._describe(), self.backend)

    def _describe(self):
        return self.url.render_as_string(hide_password=True)

    def _create_engine(self):
        if self.backend == "sqlite":
            engine = sa.create_engine(
                self.url, connect_args={"timeout": self.busy_timeout}
            )
            busy_ms = int(self.busy_timeout * 1000)

            @sa.event.listens_for(engine, "connect")
            def _on_connect(connection, _record):
                cursor = connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
                cursor.close()

            return engine

        return sa.create_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
            connect_args={"connect_timeout": max(1, round(self.connect_timeout))},
        )

    def _begin(self):
        """Opens a transaction; SQLite's folder is made first if need be."""
        if not self._schema_ready:
            pathlib.Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        return self._engine.begin()

    def _ensure_schema(self, connection):
        """Creates the SQLite table and indexes when the file has none."""
        if self._schema_ready:
            return
        connection.execute(CreateTable(TABLE, if_not_exists=True))
        for index in INDEXES:
            connection.execute(CreateIndex(index, if_not_exists=True))
        self._schema_ready = True

    def record(self, row):
        """Queues one row without waiting; a full queue drops it.

        Args:
            row: the column values; ``id`` must be set.

        Returns:
            A ``Recorded`` with the row's id.
        """
        self._ensure_open()
        entry = _Entry(row)
        with self._lock:
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self._count("dropped", 1)
                dropped = self._counts["dropped"]
                entry = None
            else:
                self._pending += 1
                dropped = None
        if dropped is not None and (dropped == 1 or dropped % 100 == 0):
            log.warning(
                "history queue full (%d rows): %d rows dropped so far",
                self.queue_size,
                dropped,
            )

        return Recorded(row["id"], entry)

    def _count(self, outcome, number):
        # Called with the lock held.
        self._counts[outcome] += number
        ROWS.labels(outcome).inc(number)

    def _run(self, rows):
        stopping = False
        while not stopping:
            first = rows.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    item = rows.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch):
        try:
            with self._begin() as connection:
                self._ensure_schema(connection)
                connection.execute(sa.insert(TABLE), [entry.row for entry in batch])
        except Exception as error:  # any failure is counted, none escapes
            outcome = "failed"
            log.error(
                "history: %d rows not written to %s: %s",
                len(batch),
                self._describe(),
                _first_line(error),
            )
        else:
            outcome = "written"

        with self._lock:
            self._count(outcome, len(batch))
            self._pending -= len(batch)
            self._idle.notify_all()
        for entry in batch:
            entry.written = outcome == "written"
            entry.done.set()

    def flush(self, timeout=10.0):
        """Waits until every queued row is written or has failed.

        Returns:
            True when nothing is left queued, False after ``timeout``.
        """
        with self._lock:
            if self._pid != os.getpid():
                return True
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout=10.0):
        """Writes what is queued, then stops the writer thread."""
        with self._lock:
            if self._pid != os.getpid() or self._thread is None:
                return
            thread, rows = self._thread, self._queue
            self._thread = None
        rows.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            log.error("history: rows still queued after %.0f s at exit", timeout)

    def stats(self):
        """This process's counts: queued, written, failed and dropped rows."""
        self._ensure_open()
        with self._lock:
            return {
                "backend": self.backend,
                "pid": os.getpid(),
                "queued": self._pending,
                **self._counts,
            }

    def page(self, limit, before=None):
        """Reads rows newest first, after an optional cursor.

        Args:
            limit: rows to answer, at most.
            before: the id of a row; only rows older than it are answered.
                Defaults to none: the newest rows.

        Returns:
            ``(rows, more)``: the rows as dicts of ``PUBLIC_COLUMNS``, and
            whether older rows remain.

        Raises:
            BadRequest: ``before`` names no row of the history.
            HistoryUnavailable: the database cannot be read.
        """
        self._ensure_open()
        columns = [TABLE.c[name] for name in PUBLIC_COLUMNS]
        query = sa.select(*columns).order_by(
            TABLE.c.created_at.desc(), TABLE.c.id.desc()
        )
        try:
            with self._begin() as connection:
                self._ensure_schema(connection)
                if before is not None:
                    cursor = connection.execute(
                        sa.select(TABLE.c.created_at).where(TABLE.c.id == before)
                    ).scalar()
                    if cursor is None:
                        raise BadRequest(
                            f"before must be the id of a classification in the "
                            f"history; no classification has id {before}"
                        )
                    query = query.where(
                        sa.or_(
                            TABLE.c.created_at < cursor,
                            sa.and_(TABLE.c.created_at == cursor, TABLE.c.id < before),
                        )
                    )
                found = connection.execute(query.limit(limit + 1)).mappings().all()
        except (sa.exc.SQLAlchemyError, OSError) as error:
            log.error(
                "history: cannot read %s: %s", self._describe(), _first_line(error)
            )
            raise HistoryUnavailable(
                "the classification history cannot be read right now; try again shortly"
            ) from error

        rows = [_public(row) for row in found[:limit]]
        return rows, len(found) > limit


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else repr(error)


def _public(row):
    created = row["created_at"]
    if created.tzinfo is None:
        # SQLite keeps no time zone; the gateway writes UTC.
        created = created.replace(tzinfo=datetime.UTC)
    return {
        **row,
        "id": str(row["id"]),
        "created_at": created.astimezone(datetime.UTC).isoformat(),
    }


def split_url(url):
    """Keeps a URL's scheme, host (with any port) and path, nothing else.

    Returns:
        ``(scheme, host, path)``, or three Nones without a URL.
    """
    if not url:
        return None, None, None
    parsed = urllib.parse.urlsplit(url.strip())
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parsed.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"

    return parsed.scheme.lower(), host, parsed.path or "/"


def record_answer(answer, url=None, requester=None):
    """Records one classification answered by this app; never raises.

    Args:
        answer: the classify answer: ``predictions``, ``model``, ``image``
            (with ``source``) and ``timing_ms`` (with ``total``).
        url: the URL the image was fetched from, if it was. Defaults to none.
        requester: ``(role, user_id)`` from a Hasura session. Defaults to
            none.

    Returns:
        A ``Recorded`` with the row's id.

    Note:
        ``top5`` keeps the first five classes answered: fewer when the
        request asked for fewer with ``top_k``.
    """
    scheme, host, path = split_url(url)
    role, user_id = requester or (None, None)
    best_five = answer["predictions"][:TOP_CLASSES]
    top = best_five[0]
    row = {
        "id": uuid.uuid4(),
        "created_at": datetime.datetime.now(datetime.UTC),
        "source": answer["image"]["source"],
        "image_sha256": answer["image"]["sha256"],
        "image_width": answer["image"]["width"],
        "image_height": answer["image"]["height"],
        "url_scheme": scheme,
        "url_host": host,
        "url_path": path,
        "model_name": answer["model"]["name"],
        "model_version": answer["model"]["version"],
        "weights": answer["model"]["weights"],
        "top_label": top["label"],
        "top_score": top["probability"],
        "top5": [
            {key: item[key] for key in ("class_id", "label", "probability")}
            for item in best_five
        ],
        "latency_ms": answer["timing_ms"]["total"],
        "requester_role": role,
        "requester_user_id": user_id,
    }
    store = flask.current_app.extensions["history"]
    try:
        return store.record(row)
    except Exception:  # history must never fail a classification
        log.exception("history: row not queued")
        return Recorded(row["id"], None)
