"""Concurrent HTTP clients posting photos, and the statistics of a run.

Each of N client threads keeps one ``requests.Session`` (one kept-alive
connection where the server allows it) and posts the photos in turn as the
multipart field ``image``, one request after another. The bodies are
encoded once beforehand, so the clients spend little CPU: they share the
machine with the servers they measure. A run stops at a request count or a
time limit, whichever comes first, and every request has a timeout.
"""

import dataclasses
import itertools
import threading
import time
from concurrent import futures

import numpy as np
import requests
import urllib3

REQUEST_TIMEOUT_SECONDS = 120.0
"""Longest a single request may take; a slower one counts as an error."""


@dataclasses.dataclass(frozen=True)
class Stats:
    """Throughput and latency of one measured run.

    Latencies are in milliseconds; ``throughput`` is successful answers
    per second of wall time.
    """

    label: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50: float
    p95: float
    p99: float


def summarize(label, concurrency, latencies_ms, errors, seconds, items=1):
    """Turns measured latencies into ``Stats``.

    Args:
        label: what was measured, e.g. ``"ours"``.
        concurrency: clients (or batch size) of the run.
        latencies_ms: the latency of each successful call.
        errors: calls that failed.
        seconds: wall time of the run.
        items: images per call (the batch size). Defaults to 1.

    Returns:
        ``Stats``; percentiles are NaN when nothing succeeded.
    """
    latencies = np.asarray(latencies_ms, dtype=np.float64)
    if latencies.size:
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    else:
        p50 = p95 = p99 = float("nan")
    throughput = latencies.size * items / seconds if seconds > 0 else 0.0

    return Stats(
        label=label,
        concurrency=concurrency,
        requests=int(latencies.size),
        errors=int(errors),
        seconds=float(seconds),
        throughput=float(throughput),
        p50=float(p50),
        p95=float(p95),
        p99=float(p99),
    )


def encode_uploads(photos):
    """Encodes each photo once as a multipart body with the field ``image``.

    Args:
        photos: paths of the photos.

    Returns:
        A list of ``(body, content_type)`` pairs.
    """
    uploads = []
    for path in photos:
        body, content_type = urllib3.encode_multipart_formdata(
            {"image": (path.name, path.read_bytes())}
        )
        uploads.append((body, content_type))

    return uploads


def run_clients(url, uploads, clients, max_requests, max_seconds, label):
    """Posts ``uploads`` to ``url`` from ``clients`` threads at once.

    Args:
        url: the endpoint to post to.
        uploads: ``(body, content_type)`` pairs from ``encode_uploads``;
            client ``i`` starts at upload ``i`` and goes round.
        clients: the number of concurrent clients.
        max_requests: stop after this many requests in all.
        max_seconds: stop starting requests after this many seconds.
        label: names the run in the returned ``Stats``.

    Returns:
        ``(stats, first_error)``: the ``Stats`` of the run, in which a
        request that does not answer 200 counts as an error, and the first
        error's description (None when all succeeded).
    """
    counter = itertools.count()
    lock = threading.Lock()
    latencies = []
    failures = []
    started = time.perf_counter()
    deadline = started + max_seconds

    def client(index):
        with requests.Session() as session:
            for body, content_type in itertools.islice(
                itertools.cycle(uploads), index % len(uploads), None
            ):
                if next(counter) >= max_requests or time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                error = _post(session, url, body, content_type)
                elapsed = (time.perf_counter() - sent) * 1000
                with lock:
                    if error is None:
                        latencies.append(elapsed)
                    else:
                        failures.append(error)

    with futures.ThreadPoolExecutor(clients, thread_name_prefix="client") as pool:
        for outcome in [pool.submit(client, index) for index in range(clients)]:
            outcome.result()
    seconds = time.perf_counter() - started
    stats = summarize(label, clients, latencies, len(failures), seconds)

    return stats, (failures[0] if failures else None)


def _post(session, url, body, content_type):
    """Posts one body; returns None on a 200 answer, else what went wrong."""
    try:
        response = session.post(
            url,
            data=body,
            headers={"Content-Type": content_type},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except requests.RequestException as error:
        return f"{type(error).__name__}: {error}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"

    return None


def interleaved_latencies(first, second, pairs):
    """Times two calls in turn, ``pairs`` times: first, second, first...

    Alternating puts both under the same machine conditions, so a machine
    whose speed drifts (a shared VM) shifts both alike and their ratio
    holds, where two runs minutes apart would disagree.

    Args:
        first: a function of no arguments; it raises on failure.
        second: another such function.
        pairs: how many times each is called.

    Returns:
        ``(first_ms, second_ms)``: the latencies of each, in milliseconds.
    """
    first_ms, second_ms = [], []
    for _ in range(pairs):
        for call, latencies in ((first, first_ms), (second, second_ms)):
            sent = time.perf_counter()
            call()
            latencies.append((time.perf_counter() - sent) * 1000)

    return first_ms, second_ms


def poster(url, uploads):
    """Returns a function posting the uploads in turn, one per call.

    It raises ``RuntimeError`` on an answer other than 200. Close the
    returned function's ``session`` when done.
    """
    session = requests.Session()
    turn = itertools.cycle(uploads)

    def post():
        body, content_type = next(turn)
        error = _post(session, url, body, content_type)
        if error is not None:
            raise RuntimeError(f"{url}: {error}")

    post.session = session

    return post
