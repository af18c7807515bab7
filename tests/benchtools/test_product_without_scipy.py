"""The product imports and checks without scipy: only benchtools (dev extras) needs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, os, pkgutil, sys
sys.modules["scipy"] = None  # any `import scipy...` now raises ImportError
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microgrid.settings")
import django
django.setup()
importlib.import_module("microgrid.urls")  # registers the path converters
names = []
for package in ("microgrid", "balancing", "legacy_circuit", "simulator"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        importlib.import_module(info.name)
        names.append(info.name)
from django.core.management import call_command
call_command("check")
print(len(names), "modules")
"""


def test_every_product_module_imports_without_scipy():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-2]) > 100, done.stdout
