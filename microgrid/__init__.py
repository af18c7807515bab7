"""Microgrid: the electrical control plane of EV-charging depots."""

from microgrid.celery import app as celery_app

__all__ = ["celery_app"]
