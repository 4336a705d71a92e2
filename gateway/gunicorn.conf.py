"""gunicorn settings for the gateway: ``gunicorn -c gateway/gunicorn.conf.py``.

Each value can be overridden on the command line or with
``GUNICORN_CMD_ARGS``. Workers are threads-heavy because a request spends
most of its time waiting on the model server, not on the CPU.

Metrics: every worker is a process, so prometheus-client runs in its
multiprocess mode. ``PROMETHEUS_MULTIPROC_DIR`` is set here, in the master,
before any worker imports prometheus-client: to a fresh temporary folder
removed at exit, or, when it is already set, to that folder emptied of the
files of an earlier run. A worker's files are marked dead when it exits.
"""

import glob
import os
import shutil
import tempfile

_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="deepclassify-metrics-"
    )
else:
    for stale in glob.glob(
        os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")
    ):
        os.remove(stale)

bind = os.environ.get("DEEPCLASSIFY_BIND", "127.0.0.1:8000")
wsgi_app = "gateway:create_app()"
workers = int(os.environ.get("DEEPCLASSIFY_WORKERS", "2"))
# Above MODEL_MAX_CONCURRENT_CALLS + MODEL_MAX_WAITING_CALLS (4 + 16), so
# that when the model server is slow some threads stay free for health
# checks and for quick 503s (gateway/call_limit.py).
threads = int(os.environ.get("DEEPCLASSIFY_THREADS", "32"))
# Seconds a request may run before its worker is replaced; above the model
# deadline plus the URL fetch limit, so only a stuck worker hits it.
timeout = 60
# The drain on SIGTERM (stop) and SIGHUP (reload): a worker stops accepting
# and has this long to finish the requests it holds, then it is killed. It
# covers the longest request, a URL fetch (10 s) then a model call (10 s).
# An orchestrator must wait longer before its own SIGKILL.
graceful_timeout = 25
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = "info"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO",
            "handlers": ["console"],
            "propagate": False,
        },
    },
    "root": {"level": "INFO", "handlers": ["console"]},
}


def child_exit(server, worker):
    """Marks the metrics files of a worker that exited as dead."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Removes the metrics folder this configuration created."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
