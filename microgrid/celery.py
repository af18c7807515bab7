"""The Celery app, configured from Django settings (CELERY_* names)."""

import gc
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microgrid.settings")

app = Celery("microgrid")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs) -> None:
    """Treat every task as Django treats a request: close a database connection that is
    broken or older than CONN_MAX_AGE, keep a healthy one.

    Celery's Django fix-up would otherwise close the connection before and after every
    task (unless CELERY_DB_REUSE_MAX is set, as settings does), and on PostgreSQL a new
    connection per cycle costs more than the cycle's own queries.
    """
    if kwargs.get("task") is not None and getattr(kwargs["task"].request, "is_eager", False):
        return  # an eager task runs inside the caller's request or test
    from django.db import close_old_connections

    close_old_connections()


@worker_process_init.connect  # each prefork child, once started
@worker_ready.connect  # the worker's own process (where the solo pool runs the tasks)
def _freeze_startup_objects(**kwargs) -> None:
    """Leave what the worker holds once started (Django, the apps, every module: about
    120,000 objects) out of the cyclic garbage collector's passes.

    A cycle allocates thousands of short-lived objects, so the collector runs often, and each
    of its full passes walked every object the process holds: 14 % of a scheduled cycle's CPU
    (docs/performance.md, "Fleet of 5,000"). Frozen objects are never collected (they live as
    long as the process anyway); everything allocated later is collected as before.
    """
    gc.collect()
    gc.freeze()
