"""``make soak``: bounded load on the real stack, and what it cost.

Starts the local model server and the gateway under gunicorn on loopback
(``tools/stack.py``) and a loopback HTTP server over scikit-image's photos,
then sends a fixed number of classify requests at a fixed concurrency,
within a time limit: uploads and URLs alternate, over real photos. It
prints the requests sent, the answers by status and the errors, the p50
and p99 latency, and the resident memory of the gateway (gunicorn's master
and workers summed) and of the model server after the warm-up and at the
end.

Exits 1 when a request failed, the time ran out, or either process grew by
more than ``--max-memory-growth`` percent after the warm-up. The fault
drills (``tests/test_fault_drills.py``) drive their load with ``Load``.
"""

import argparse
import collections
import contextlib
import dataclasses
import functools
import hashlib
import http.server
import pathlib
import sys
import tempfile
import threading
import time

import psutil
import requests

from tools import stack

SOAK_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")
"""Real photos from scikit-image, of several sizes and both formats."""
REQUEST_TIMEOUT_SECONDS = 60.0
"""The client's limit per request: above every limit of the gateway."""
CLASSIFY_PATH = "/api/v1/classify"
MIB = 1024 * 1024


@dataclasses.dataclass
class Result:
    """One request and how it ended."""

    kind: str
    """``upload`` or ``url``."""
    photo: str
    started: float
    """``time.monotonic()`` when it was sent."""
    ended: float
    status: int | None = None
    """The HTTP status, or None when no answer came."""
    error: str | None = None
    """Why no answer came (the exception's name), or why a 200 was wrong."""
    retry_after: str | None = None

    @property
    def seconds(self):
        return self.ended - self.started

    @property
    def outcome(self):
        """The status as text, or the error: what the summary counts."""
        return self.error or str(self.status)


def photo_folder():
    """scikit-image's folder of real photos."""
    import skimage.data

    return pathlib.Path(skimage.data.__file__).parent


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve_folder(folder):
    """Serves a folder over HTTP on loopback; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Load:
    """Classify requests from a pool of client threads, until told to stop.

    Request ``i`` sends photo ``i mod n``; even ones upload it, odd ones
    ask for it by URL. Each answer of 200 is checked: the image's SHA-256
    must be the photo's and the top-5 must be there, or it counts as an
    error ``wrong-answer``.

    Args:
        gateway_url: the gateway's base URL.
        photos: ``{name: path}`` of the photos to send.
        photo_base_url: where the same files are served by name.
        concurrency: client threads, each with one request open at a time.
        keep_alive: reuse connections (one session per thread). Defaults to
            True; False sends ``Connection: close`` on each request.

    Attributes:
        pause_after_error: seconds a client waits after an answer other
            than 200, so that fast refusals do not flood the gateway.
            Defaults to 0.
    """

    def __init__(
        self, gateway_url, photos, photo_base_url, concurrency, keep_alive=True
    ):
        self.url = gateway_url + CLASSIFY_PATH
        self.photo_base_url = photo_base_url
        self.concurrency = concurrency
        self.keep_alive = keep_alive
        self._photos = [
            (name, pathlib.Path(path).read_bytes()) for name, path in photos.items()
        ]
        self._digests = {
            name: hashlib.sha256(data).hexdigest() for name, data in self._photos
        }
        self._lock = threading.Lock()
        self._next = 0
        self._limit = 0
        self._deadline = 0.0
        self._stop = threading.Event()
        self._threads = []
        self.results = []
        self.pause_after_error = 0.0

    def start(self, count, time_limit):
        """Starts sending up to ``count`` requests within ``time_limit`` s."""
        self._limit = self._next + count
        self._deadline = time.monotonic() + time_limit
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def wait(self):
        """Waits for the clients to finish; returns every result so far."""
        for thread in self._threads:
            thread.join()
        with self._lock:
            return list(self.results)

    def stop(self):
        """Sends no new request, waits for the open ones; returns all results."""
        self._stop.set()
        return self.wait()

    def run(self, count, time_limit):
        """Sends ``count`` requests within ``time_limit`` s; returns them."""
        first = len(self.results)
        self.start(count, time_limit)
        return self.wait()[first:]

    def snapshot(self):
        """The results so far, while the load goes on."""
        with self._lock:
            return list(self.results)

    def _take(self):
        with self._lock:
            if (
                self._stop.is_set()
                or self._next >= self._limit
                or time.monotonic() >= self._deadline
            ):
                return None
            index = self._next
            self._next += 1
        return index

    def _client(self):
        session = requests.Session()
        headers = {} if self.keep_alive else {"Connection": "close"}
        with session:
            while (index := self._take()) is not None:
                result = self._send(session, index, headers)
                with self._lock:
                    self.results.append(result)
                if result.outcome != "200":
                    self._stop.wait(self.pause_after_error)

    def _send(self, session, index, headers):
        name, data = self._photos[index % len(self._photos)]
        kind = "upload" if index % 2 == 0 else "url"
        started = time.monotonic()
        result = Result(kind, name, started, started)
        try:
            if kind == "upload":
                response = session.post(
                    self.url,
                    files={"image": (name, data)},
                    headers=headers,
                    timeout=REQUEST_TIMEOUT_SECONDS,
                )
            else:
                response = session.post(
                    self.url,
                    json={"url": f"{self.photo_base_url}/{name}"},
                    headers=headers,
                    timeout=REQUEST_TIMEOUT_SECONDS,
                )
        except requests.RequestException as error:
            result.ended = time.monotonic()
            result.error = type(error).__name__
            return result

        result.ended = time.monotonic()
        result.status = response.status_code
        result.retry_after = response.headers.get("Retry-After")
        if response.status_code == 200 and not self._answer_is_right(
            name, response.json()
        ):
            result.error = "wrong-answer"

        return result

    def _answer_is_right(self, name, answer):
        return (
            answer["image"]["sha256"] == self._digests[name]
            and len(answer["predictions"]) == 5
        )


def first_call(gateway_url, photo, attempts=5):
    """Classifies one photo alone, before any load, until it answers 200.

    A freshly loaded model's first calls are slow (TensorFlow prepares the
    graph then); sixteen of them at once would each miss the deadline.
    TensorFlow Serving avoids it with warm-up requests in the model's
    ``assets.extra``; the local server has none.

    Args:
        gateway_url: the gateway's base URL.
        photo: the path of the photo to send.
        attempts: calls before giving up; one that times out in the
            gateway still warms the model. Defaults to 5.

    Raises:
        RuntimeError: no call answered 200.
    """
    for _ in range(attempts):
        response = requests.post(
            gateway_url + CLASSIFY_PATH,
            files={"image": (photo.name, photo.read_bytes())},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        if response.status_code == 200:
            return

    raise RuntimeError(
        f"no first call answered 200; the last was {response.status_code}: "
        f"{response.text}"
    )


def tree_rss(pid):
    """Resident bytes of a process and all its descendants, summed."""
    process = psutil.Process(pid)
    processes = [process, *process.children(recursive=True)]
    total = 0
    for each in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += each.memory_info().rss
    return total


def percentile(values, fraction):
    """The nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))

    return ordered[int(rank) - 1]


@dataclasses.dataclass
class Summary:
    """What a soak run measured."""

    requests: int
    planned: int
    outcomes: dict
    p50_ms: float
    p99_ms: float
    seconds: float
    memory: dict
    """``{process name: (bytes after warm-up, bytes at the end)}``."""
    kinds: dict
    """``{"upload": count, "url": count}`` of the requests sent."""

    @property
    def errors(self):
        """``{outcome: count}`` of every request not answered 200 rightly."""
        return {key: n for key, n in self.outcomes.items() if key != "200"}

    def growth(self, name):
        """Memory growth of one process after the warm-up, in percent."""
        before, after = self.memory[name]
        return (after - before) / before * 100

    def report(self):
        """The lines ``make soak`` prints."""
        lines = [
            f"soak: {self.requests} of {self.planned} requests sent in "
            f"{self.seconds:.1f} s ({self.requests / self.seconds:.1f}/s): "
            f"{self.kinds.get('upload', 0)} uploads, "
            f"{self.kinds.get('url', 0)} URLs",
            "  answers: "
            + ", ".join(f"{k} x {n}" for k, n in sorted(self.outcomes.items())),
            "  errors: "
            + (
                ", ".join(f"{k} x {n}" for k, n in sorted(self.errors.items()))
                or "none"
            ),
            f"  latency: p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms",
            "  memory (RSS)       after warm-up    at the end    growth",
        ]
        for name, (before, after) in self.memory.items():
            lines.append(
                f"  {name:<18} {before / MIB:9.1f} MiB {after / MIB:9.1f} MiB"
                f"   {self.growth(name):+6.1f}%"
            )

        return lines


def soak(gateway, model_server, load, requests_count, warmup, time_limit):
    """Warms up, measures memory, sends the load, measures again.

    Args:
        gateway: the gateway's ``stack.Process`` (gunicorn's master).
        model_server: the model server's ``stack.Process``.
        load: a ``Load`` on the gateway.
        requests_count: requests measured after the warm-up.
        warmup: requests sent first, at the same concurrency.
        time_limit: seconds for the whole run, warm-up included.

    Returns:
        A ``Summary`` of the requests after the warm-up; errors during the
        warm-up are counted in it too.
    """
    started = time.monotonic()
    warm = load.run(warmup, time_limit) if warmup else []
    pids = {"gateway": gateway.pid, "model server": model_server.pid}
    before = {name: tree_rss(pid) for name, pid in pids.items()}

    remaining = max(0.0, time_limit - (time.monotonic() - started))
    measured_started = time.monotonic()
    results = load.run(requests_count, remaining)
    seconds = time.monotonic() - measured_started
    after = {name: tree_rss(pid) for name, pid in pids.items()}

    outcomes = collections.Counter(result.outcome for result in results)
    for result in warm:
        if result.outcome != "200":
            outcomes[f"{result.outcome} (warm-up)"] += 1
    if len(results) < requests_count:
        outcomes["not sent (time limit)"] = requests_count - len(results)
    latencies = [result.seconds * 1000 for result in results] or [0.0]

    return Summary(
        requests=len(results),
        planned=requests_count,
        outcomes=dict(outcomes),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        seconds=seconds,
        memory={name: (before[name], after[name]) for name in pids},
        kinds=dict(collections.Counter(result.kind for result in results)),
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--warmup", type=int, default=200, help="requests before memory is measured"
    )
    parser.add_argument(
        "--time-limit", type=float, default=1200.0, help="seconds for the whole run"
    )
    parser.add_argument(
        "--max-memory-growth",
        type=float,
        default=10.0,
        help="percent either process may grow after the warm-up; "
        "a negative value checks nothing",
    )
    parser.add_argument(
        "--model-base",
        type=pathlib.Path,
        help="a model folder with exported versions; "
        "defaults to models/inception_v3, exported when empty",
    )
    parser.add_argument(
        "--log-dir", type=pathlib.Path, default=stack.ROOT / "build" / "soak"
    )

    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.model_base is None:
        from tools.run import MODEL_BASE, ensure_model

        ensure_model()
        args.model_base = MODEL_BASE
    args.log_dir.mkdir(parents=True, exist_ok=True)
    photos = {name: photo_folder() / name for name in SOAK_PHOTOS}

    with contextlib.ExitStack() as cleanup:
        config = stack.write_model_config(
            pathlib.Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            / "models.config",
            args.model_base,
        )
        grpc_port, http_port = stack.free_port(), stack.free_port()
        model_server = stack.start_model_server(
            grpc_port, config, args.log_dir / "model-server.log"
        )
        cleanup.callback(model_server.stop)
        gateway = stack.start_gateway(
            http_port,
            f"127.0.0.1:{grpc_port}",
            args.log_dir / "gateway.log",
            # The load repeats a few photos; without the answer cache each
            # request reaches the model, which is what a soak must load.
            settings={"FETCH_ALLOW_NETWORKS": "127.0.0.0/8", "CACHE_MAX_ENTRIES": 0},
        )
        cleanup.callback(gateway.stop)
        photo_base_url = cleanup.enter_context(serve_folder(photo_folder()))
        gateway_url = f"http://127.0.0.1:{http_port}"
        stack.wait_for_http(gateway_url + "/readyz", gateway, timeout=180)
        first_call(gateway_url, photos[SOAK_PHOTOS[0]])

        print(
            f"soak: {args.warmup} warm-up + {args.requests} requests at "
            f"concurrency {args.concurrency}, at most {args.time_limit:g} s; "
            f"logs in {args.log_dir}",
            flush=True,
        )
        load = Load(gateway_url, photos, photo_base_url, args.concurrency)
        summary = soak(
            gateway, model_server, load, args.requests, args.warmup, args.time_limit
        )

    print("\n".join(summary.report()), flush=True)
    failures = []
    if summary.errors:
        failures.append("some requests failed")
    if args.max_memory_growth >= 0:
        failures.extend(
            f"{name} grew more than {args.max_memory_growth:g}%"
            for name in summary.memory
            if summary.growth(name) > args.max_memory_growth
        )
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
