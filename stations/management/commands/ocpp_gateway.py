"""`manage.py ocpp_gateway [--host 127.0.0.1] [--port 9000]`: the OCPP gateway (asyncio)."""

from __future__ import annotations

import asyncio
import contextlib

from django.core.management.base import BaseCommand

from stations.gateway import Gateway


class Command(BaseCommand):
    help = "Run the OCPP 1.6J / 2.0.1 gateway: stations connect at ws://HOST:PORT/ocpp/<id>."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9000, help="0: any free port")

    def handle(self, *args, host, port, **options):
        def ready(bound: int) -> None:
            # Tests and supervisors read this line to find the port.
            self.stdout.write(f"OCPP gateway listening on ws://{host}:{bound}/ocpp/<station_id>")
            self.stdout.flush()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(Gateway(host, port).run(ready))
