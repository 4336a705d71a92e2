"""Reads a refused request body to its end, so the client sees the answer.

Many clients (``curl``, ``http.client``) send the whole body before they
read the answer. When the gateway refuses a body for its size without
reading it, gunicorn reads on only briefly (64 KiB) before closing, the
client's send fails with a broken pipe or a reset connection, and the JSON
413 is never seen. So the rest of a refused body is read and thrown away,
up to a byte and a time limit (``DISCARD_MAX_BYTES``,
``DISCARD_TIMEOUT_SECONDS``); past either, such a client sees the
connection close, as it would from any server protecting itself.
"""

import time

CHUNK_BYTES = 256 * 1024


def discard_body(environ, max_bytes, max_seconds):
    """Reads and drops what is left of the request body.

    Args:
        environ: the WSGI environ of the request.
        max_bytes: the most bytes read before giving up.
        max_seconds: the most seconds spent before giving up.

    Returns:
        The number of bytes read and dropped.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return 0
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > max_bytes:
        return 0

    deadline = time.monotonic() + max_seconds
    dropped = 0
    while dropped < max_bytes and time.monotonic() < deadline:
        try:
            chunk = stream.read(min(CHUNK_BYTES, max_bytes - dropped))
        except (OSError, ValueError):
            break
        if not chunk:
            break
        dropped += len(chunk)

    return dropped
