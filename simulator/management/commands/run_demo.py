"""`manage.py run_demo`: the demo's three processes under one supervisor (what `make run` runs).

The web server, a Celery worker with embedded beat, and the live telemetry feed each
run in their own session, so the terminal's Ctrl-C reaches only this supervisor. It
then asks each child once to stop (SIGINT to the two Django commands, SIGTERM, Celery's
warm shutdown, to the worker), waits up to --grace seconds, and only then kills what is
left, saying so. If one child dies on its own the others are stopped too.

The console stays readable: Celery logs at WARNING (CELERY_LOGLEVEL=INFO for more),
the web server logs only refused and failed requests (SERVER_LOG_LEVEL=INFO for every
request), and the URL and the demo logins are printed once the server answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

LOGINS = "operator / operator-demo (Manage), support / support-demo (Manage and admin)"


class Command(BaseCommand):
    help = "Run the demo: web server, Celery worker with beat, live telemetry; Ctrl-C stops all."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--ocpp-port", type=int, default=9000, help="the OCPP gateway's")
        parser.add_argument("--grace", type=float, default=10.0, help="seconds to stop cleanly")

    def handle(self, *args, host, port, grace, ocpp_port=9000, **options):
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        celery = str(Path(python).with_name("celery"))
        env = {**os.environ}
        env.setdefault("SERVER_LOG_LEVEL", "WARNING")
        env.setdefault("LOG_LEVEL", "WARNING")
        # Output piped (`make run | tee run.log`) appears as it happens, not at exit.
        env.setdefault("PYTHONUNBUFFERED", "1")
        level = f"--loglevel={env.get('CELERY_LOGLEVEL', 'WARNING')}"
        worker = [celery, "-A", "microgrid", "--quiet", "worker"]  # --quiet: no banner
        commands = {
            # Cycles and beat; solo pool: a warm shutdown ends as soon as the task does.
            "worker": (
                [
                    *worker,
                    "-B",
                    "-Q",
                    "celery",
                    "--pool=solo",
                    "-n",
                    "main@%h",
                    level,
                    "--without-mingle",
                    "--without-gossip",
                ],
                signal.SIGTERM,
            ),
            # Setpoint delivery: threads, so a slow webhook receiver holds one thread only.
            "dispatch": (
                [
                    *worker,
                    "-Q",
                    "dispatch",
                    "--pool",
                    "threads",
                    "--concurrency=8",
                    "-n",
                    "dispatch@%h",
                    level,
                    "--without-mingle",
                    "--without-gossip",
                ],
                signal.SIGTERM,
            ),
            "ocpp": (
                [python, manage, "ocpp_gateway", "--host", host, "--port", str(ocpp_port)],
                signal.SIGINT,
            ),
            "feed": ([python, manage, "demo_feed", "--quiet"], signal.SIGINT),
            "web": ([python, manage, "runserver", "--noreload", f"{host}:{port}"], signal.SIGINT),
        }
        stop = {"asked": None}

        def on_signal(signum, frame):
            stop["asked"] = signal.Signals(signum).name

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        children: dict[str, subprocess.Popen] = {}
        for name, (argv, _) in commands.items():
            children[name] = subprocess.Popen(argv, env=env, start_new_session=True)
        announced = False
        ended = None
        while stop["asked"] is None and ended is None:
            for name, child in children.items():
                if child.poll() is not None:
                    ended = (name, child.returncode)
                    break
            if not announced and _listening(host, port):
                announced = True
                self.stdout.write(
                    self.style.SUCCESS(f"\nMicrogrid is at http://{host}:{port}/manage/")
                    + f"\n  logins: {LOGINS}"
                    + "\n  operator is a member of the demo depot MG.DEMO-1 only; support also "
                    "sees the second depot MG.HARBOUR-1"
                    + f"\n  API docs: http://{host}:{port}/api/docs/"
                    + "\n  Ctrl-C stops the web server, the workers and the feed.\n"
                )
                self.stdout.flush()
            time.sleep(0.2)
        if ended:
            self.stderr.write(f"{ended[0]} exited with status {ended[1]}: stopping the others")
        else:
            self.stdout.write(f"\n{stop['asked']}: stopping the web server, workers and feed...")
            self.stdout.flush()
        # From here a second Ctrl-C changes nothing: the grace period still ends in a kill.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal(commands[name][1])
        asked_at = time.monotonic()
        deadline = asked_at + grace
        took: dict[str, float] = {}
        while time.monotonic() < deadline and any(c.poll() is None for c in children.values()):
            for name, child in children.items():
                if name not in took and child.poll() is not None:
                    took[name] = time.monotonic() - asked_at
            time.sleep(0.1)
        killed = []
        for name, child in children.items():
            if name not in took and child.poll() is not None:
                took[name] = time.monotonic() - asked_at
            if child.poll() is None:
                killed.append(name)
            # whatever the child left in its session (the embedded beat process)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        if killed:
            self.stderr.write(f"killed after {grace:g} s: {', '.join(killed)}")
        else:
            each = ", ".join(f"{n} {t:.1f}" for n, t in sorted(took.items(), key=lambda x: x[1]))
            self.stdout.write(
                f"stopped in {time.monotonic() - asked_at:.1f} s" + (f" ({each})." if each else ".")
            )
        if ended:
            sys.exit(1)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
