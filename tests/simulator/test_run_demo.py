"""`make run`'s supervisor: one Ctrl-C (SIGINT to the terminal's process group) stops the web
server, both Celery workers, the OCPP gateway and the demo feed, cleanly and within seconds.

A real run on a scratch SQLite database and the filesystem broker under a temporary
directory, with HOME pointing nowhere (nothing may depend on it), on ports nobody else uses.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_one_sigint_to_the_process_group_stops_every_process_cleanly(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "no-home"),  # does not exist
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "MICROGRID_VAR_DIR": str(tmp_path),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT)),
    }
    manage = [sys.executable, "manage.py"]
    for args in (
        ["migrate", "--noinput", "-v0"],
        ["load_profile", "simulator/profiles/demo_depot.yaml"],
    ):
        done = subprocess.run([*manage, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    port, ocpp_port = _free_port(), _free_port()
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen(
            [*manage, "run_demo", "--port", str(port), "--ocpp-port", str(ocpp_port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a terminal's foreground job
        )
    try:
        deadline = time.monotonic() + 90
        while "Microgrid is at" not in log.read_text() and time.monotonic() < deadline:
            assert run.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert f"http://127.0.0.1:{port}/manage/" in log.read_text()
        time.sleep(3)  # the workers and the feed are up and working
        children = _children_of(run.pid)
        assert len(children) == 5, log.read_text()[-3000:]
        grandchildren = [g for c in children for g in _children_of(c)]

        asked = time.monotonic()
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends
        run.wait(timeout=20)
        took = time.monotonic() - asked
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    text = log.read_text()
    assert run.returncode == 0, text[-3000:]
    assert took < 12, text[-3000:]
    assert "stopped in" in text and "killed after" not in text, text[-3000:]
    for name in ("web", "worker", "dispatch", "ocpp", "feed"):
        assert f"{name} " in text.rsplit("stopped in", 1)[1], text[-1000:]
    assert "Traceback" not in text and "RecursionError" not in text, text[-3000:]
    assert text.count("Warm shutdown") <= 2
    assert [p for p in children + grandchildren if _alive(p)] == []
