"""gunicorn settings for the gateway: ``gunicorn -c gateway/gunicorn.conf.py``.

Each value can be overridden on the command line or with
``GUNICORN_CMD_ARGS``. Workers are threads-heavy because a request spends
most of its time waiting on the model server, not on the CPU.
"""

import os

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
