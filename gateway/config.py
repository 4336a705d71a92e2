"""The gateway's settings: defaults in one place, overridable two ways.

Every setting has a default here. An environment variable named
``DEEPCLASSIFY_<SETTING>`` overrides it (parsed to the default's type),
and a dict passed to ``create_app`` overrides both; tests use the dict.
"""

import os

ENV_PREFIX = "DEEPCLASSIFY_"

DEFAULTS = {
    # The model server: host:port, or a gRPC target such as dns:///host:8500.
    "MODEL_SERVER": "127.0.0.1:8500",
    # Seconds a Predict call may take before the answer is 504.
    "MODEL_DEADLINE_SECONDS": 10.0,
    # Predict calls one gateway process (gunicorn worker) keeps in flight at
    # once, and requests allowed to wait for one of them; a request finding
    # the waiting line full is 503 with Retry-After. The deadline above
    # covers the wait and the call. See gateway/call_limit.py.
    "MODEL_MAX_CONCURRENT_CALLS": 4,
    "MODEL_MAX_WAITING_CALLS": 16,
    # Seconds a status or metadata call may take.
    "MODEL_STATUS_DEADLINE_SECONDS": 3.0,
    # gRPC load-balancing policy across the addresses the target resolves to.
    "MODEL_LB_POLICY": "pick_first",
    # Largest upload, in bytes (the whole request body); larger is 413.
    "MAX_UPLOAD_BYTES": 20 * 1024 * 1024,
    # A body refused for its size is still read (and dropped) up to this
    # many bytes and seconds, so that the client sees the JSON 413 instead
    # of a reset connection; past either limit the connection is closed.
    "DISCARD_MAX_BYTES": 256 * 1024 * 1024,
    "DISCARD_TIMEOUT_SECONDS": 10.0,
    # Largest decoded image, in pixels, checked from the header; larger is 413.
    "MAX_IMAGE_PIXELS": 50_000_000,
    # Fetching by URL: seconds to connect, and in all.
    "FETCH_CONNECT_TIMEOUT_SECONDS": 3.0,
    "FETCH_TOTAL_TIMEOUT_SECONDS": 10.0,
    # Largest body fetched from a URL, in bytes; cut while streaming.
    "FETCH_MAX_BYTES": 20 * 1024 * 1024,
    # Redirects followed when fetching, each checked like the first URL.
    "FETCH_MAX_REDIRECTS": 3,
    # Networks (CIDR, comma-separated) that URLs may reach although they are
    # loopback or private. Empty by default: only public addresses. Meant for
    # tests and private deployments.
    "FETCH_ALLOW_NETWORKS": "",
    # Classes answered when the request does not say, and the most allowed.
    "DEFAULT_TOP_K": 5,
    "MAX_TOP_K": 10,
    # The batch endpoint: most images in one request, largest request body
    # in bytes (each image is still held to MAX_UPLOAD_BYTES or
    # FETCH_MAX_BYTES), and URLs fetched at the same time.
    "MAX_BATCH_IMAGES": 16,
    "MAX_BATCH_BYTES": 64 * 1024 * 1024,
    "BATCH_FETCH_THREADS": 4,
    # Answers kept per worker process, keyed by image SHA-256, model version
    # and top_k; 0 turns the cache off.
    "CACHE_MAX_ENTRIES": 1024,
    # Seconds the model version last seen answering is trusted for cache
    # look-ups; after that the next request goes to the model and learns
    # it again. A new version is therefore answered from the cache for at
    # most this long.
    "CACHE_VERSION_TTL_SECONDS": 5.0,
    # History of classifications (see gateway/history.py). PostgreSQL when
    # DATABASE_URL is set (postgresql://user:password@host:5432/name, the
    # database Hasura serves), otherwise this SQLite file.
    "DATABASE_URL": "",
    "HISTORY_SQLITE_PATH": os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "build", "history.sqlite3"
    ),
    # Rows waiting to be written, at most (more are dropped and counted), and
    # rows written in one transaction.
    "HISTORY_QUEUE_SIZE": 1000,
    "HISTORY_BATCH_SIZE": 100,
    # Seconds to connect to PostgreSQL; seconds SQLite waits for a lock.
    "HISTORY_CONNECT_TIMEOUT_SECONDS": 3.0,
    "HISTORY_SQLITE_BUSY_TIMEOUT_SECONDS": 5.0,
    # Rows answered by GET /api/v1/history when it does not say, and at most.
    "HISTORY_DEFAULT_LIMIT": 20,
    "HISTORY_MAX_LIMIT": 100,
    # The Hasura action: the shared secret Hasura sends in the header
    # X-DeepClassify-Action-Secret (empty: the action endpoint refuses every
    # call), and seconds the action waits for its history row to be written
    # so that the output's relationship to the row resolves.
    "ACTION_SECRET": "",
    "ACTION_HISTORY_WAIT_SECONDS": 2.0,
    # Folder of the web page, served at /.
    "UI_FOLDER": os.path.join(os.path.dirname(os.path.dirname(__file__)), "ui"),
}


def load_config(overrides=None, environ=None):
    """Merges defaults, environment variables and explicit overrides.

    Args:
        overrides: settings that win over everything. Defaults to none.
        environ: the environment to read. Defaults to ``os.environ``.

    Returns:
        A dict with every setting of ``DEFAULTS``.

    Raises:
        ValueError: an environment variable does not parse as its type, or
            an override names an unknown setting.
    """
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)

    for name, default in DEFAULTS.items():
        raw = environ.get(ENV_PREFIX + name)
        if raw is None:
            continue
        try:
            config[name] = type(default)(raw)
        except ValueError as error:
            raise ValueError(
                f"{ENV_PREFIX}{name}={raw!r} is not a valid {type(default).__name__}"
            ) from error

    unknown = set(overrides or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    config.update(overrides or {})

    return config
