"""The Celery app, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

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
