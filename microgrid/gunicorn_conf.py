"""gunicorn settings for the web processes (`make serve`, or `gunicorn -c python:microgrid.gunicorn_conf`).

Every value can be overridden from the environment (gunicorn also reads
GUNICORN_CMD_ARGS). Defaults, and why (docs/operations.md, "Web processes"):

- sync workers, WEB_CONCURRENCY of them (default: the number of cores). A
  request here is CPU-bound Python with a short wait on PostgreSQL; on a host
  that also runs the database and Celery, one worker per core keeps the run
  queue short. Threads add nothing to CPU-bound work under the GIL.
- WEB_TIMEOUT 30 s: a 10,000-charger rebalance takes about a second, so 30 s
  only ever kills a hung worker.
- max_requests 2,000 (+/- 200 jitter): a worker is recycled now and then, so
  slow memory growth cannot accumulate; the jitter keeps workers from restarting
  together.
- keepalive 5 s behind a proxy that reuses connections.
- no control socket unless WEB_CONTROL_SOCKET is set (see below).
- preload_app: the application is imported once in the master and forked,
  saving memory and start time; Django opens database connections lazily, in
  each worker, never in the master.
- each worker freezes what it holds once started (`gc.freeze`, as the Celery
  workers do, microgrid/celery.py): Django, the apps and every module are left
  out of the cyclic collector's full passes, which a 2,000-charger rebalance
  otherwise triggers several times (docs/performance.md, "Over HTTP").
"""

import gc
import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 2))
worker_class = "sync"
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "2000"))
max_requests_jitter = max_requests // 10
preload_app = True
wsgi_app = "microgrid.wsgi:application"
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn's runtime control socket (`gunicornc`) is off unless WEB_CONTROL_SOCKET names a
# path: its default path is per user, so two servers on one host would fight over it.
control_socket_disable = not os.environ.get("WEB_CONTROL_SOCKET")
if os.environ.get("WEB_CONTROL_SOCKET"):
    control_socket = os.environ["WEB_CONTROL_SOCKET"]
# Request line and header limits stay gunicorn's defaults; bodies are capped by
# MAX_REQUEST_BODY_BYTES in the application.


def post_worker_init(worker) -> None:
    """Leave the objects a worker holds once started out of the collector's passes (they live
    as long as the worker); everything a request allocates is collected as before."""
    gc.collect()
    gc.freeze()
