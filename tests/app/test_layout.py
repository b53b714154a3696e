"""The review app is Dagster-free: importing it (pages, API, edits, the services they call)
loads neither Dagster nor the code location's assets, resources, sensors or CLI."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import opentranscribe_pipeline.app.api, opentranscribe_pipeline.app.edits, opentranscribe_pipeline.app.pages
from opentranscribe_pipeline.app import create_app
layers = sorted({m.split('.')[1] for m in sys.modules if m.startswith('opentranscribe_pipeline.')} & {'assets', 'resources', 'sensors', 'cli'})
print('dagster' in sys.modules, layers)
"""


def test_the_app_imports_nothing_of_dagster():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False []"
