"""`manage.py set_station_password STATION_ID`: print a new password; only its hash is kept."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from microgrid.common.errors import DomainError
from stations.services import station_password_set


class Command(BaseCommand):
    help = "Give a charging station a new random password (printed once, stored hashed)."

    def add_arguments(self, parser):
        parser.add_argument("station_id")

    def handle(self, *args, station_id, **options):
        try:
            self.stdout.write(station_password_set(station_id=station_id))
        except DomainError as exc:
            raise CommandError(exc.message) from exc
