"""Starts DeepClassify's processes on loopback: model server and gateway.

Used by ``make run`` (``tools/run.py``), by the end-to-end tests and by
the benchmarks, so all three run the very same commands: the local model
server from the model environment, the gateway under gunicorn from its own
environment, which has no TensorFlow.
"""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL_PYTHON = ROOT / ".venv" / "model" / "bin" / "python"
GATEWAY_BIN = ROOT / ".venv" / "gateway" / "bin"
MODEL_SERVER_THREAD_ARGS = (
    "--tensorflow_intra_op_parallelism=1",
    "--tensorflow_inter_op_parallelism=2",
)
"""TensorFlow's threads as in production (serving/Dockerfile): each op on
one thread, two ops at once, beside batching.config's two batch threads."""
MODEL_SERVER_ARGS = (
    "--enable_batching",
    "--batching_parameters_file=serving/batching.config",
    "--model_config_file_poll_wait_seconds=10",
    *MODEL_SERVER_THREAD_ARGS,
)
"""Model server flags as in production: batching, TensorFlow's threads, and
the model config re-read every 10 s (label changes). Paths are relative to
ROOT.

``serving/monitoring.config`` is for TensorFlow Serving only: the local
server has no REST port to publish metrics on.
"""


GATEWAY_ENV = {"MALLOC_ARENA_MAX": "2"}
"""The gateway's environment as in its image (gateway/Dockerfile): glibc
gives each busy thread its own malloc arena and keeps what is freed there;
after load, two arenas kept a worker (8 or 32 threads) 5 to 15 MB smaller,
at the same speed."""


def free_port():
    """Returns a TCP port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_model_config(path, base_path, model_name="inception_v3", extra=""):
    """Writes a ``models.config`` naming one model at an absolute path."""
    path = pathlib.Path(path)
    path.write_text(
        "model_config_list {\n  config {\n"
        f'    name: "{model_name}"\n'
        f'    base_path: "{pathlib.Path(base_path).resolve()}"\n'
        '    model_platform: "tensorflow"\n'
        f"{extra}"
        "  }\n}\n"
    )
    return path


class Process:
    """A child process whose output goes to a log file."""

    def __init__(self, name, command, log_path, env=None, cwd=ROOT):
        self.name = name
        self.log_path = pathlib.Path(log_path)
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=40):
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def signal(self, signum):
        if self.alive():
            self.popen.send_signal(signum)

    def stop(self, timeout=20.0):
        """Sends SIGTERM, waits, then SIGKILLs the whole process group."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        self._log.close()


def start_model_server(port, model_config, log_path, extra_args=()):
    """Starts ``python -m serving`` from the model environment."""
    command = [
        str(MODEL_PYTHON),
        "-m",
        "serving",
        "--port",
        str(port),
        "--model_config_file",
        str(model_config),
        *extra_args,
    ]
    return Process("model-server", command, log_path, env={"TF_CPP_MIN_LOG_LEVEL": "2"})


def start_gateway(
    port, model_server, log_path, settings=None, workers=2, threads=None, env=None
):
    """Starts the gateway under gunicorn from the gateway environment.

    Args:
        port: the HTTP port on 127.0.0.1.
        model_server: the model server's gRPC target.
        log_path: where its output goes.
        settings: extra ``DEEPCLASSIFY_*`` settings, without the prefix.
        workers: gunicorn worker processes.
        threads: threads per worker. Defaults to gunicorn.conf.py's.
        env: other environment variables, such as
            ``PROMETHEUS_MULTIPROC_DIR``. Defaults to none.
    """
    env = {
        **GATEWAY_ENV,
        **(env or {}),
        "DEEPCLASSIFY_MODEL_SERVER": model_server,
        "DEEPCLASSIFY_BIND": f"127.0.0.1:{port}",
        "DEEPCLASSIFY_WORKERS": str(workers),
    }
    if threads is not None:
        env["DEEPCLASSIFY_THREADS"] = str(threads)
    env.update(
        {f"DEEPCLASSIFY_{key}": str(value) for key, value in (settings or {}).items()}
    )
    command = [str(GATEWAY_BIN / "gunicorn"), "-c", "gateway/gunicorn.conf.py"]
    return Process("gateway", command, log_path, env=env)


def wait_for_http(url, process, timeout=120.0, expect_status=200):
    """Polls ``url`` until it answers ``expect_status``.

    Raises:
        RuntimeError: the process died or the time ran out; the message
            carries the end of its log.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == expect_status:
                    return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            last = str(error)
        time.sleep(0.25)
    raise RuntimeError(
        f"{url} not ready after {timeout} s ({last}):\n{process.log_tail()}"
    )


def export_model(base_path, log_path, *args):
    """Runs ``python -m export --base-path base_path *args`` to completion.

    Args:
        base_path: the model's base folder.
        log_path: where the export's output goes.
        *args: more flags, e.g. ``"--weights", "random"``.

    Raises:
        subprocess.CalledProcessError: the export failed; see the log.
    """
    with pathlib.Path(log_path).open("wb") as log:
        subprocess.run(
            [str(MODEL_PYTHON), "-m", "export", "--base-path", str(base_path), *args],
            cwd=ROOT,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
