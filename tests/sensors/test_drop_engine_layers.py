"""The drop engine (``drops/``) and the speaker state (``speakers/``) are Dagster-free: the
sensor and the CLI are front ends over them, so importing them loads neither Dagster nor the
Dagster layer (``assets/``, ``resources/``, ``sensors/``) nor the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FRONT_ENDS = ("dagster", "opentranscribe_pipeline.assets", "opentranscribe_pipeline.resources")
FRONT_ENDS += ("opentranscribe_pipeline.sensors", "opentranscribe_pipeline.cli")


@pytest.mark.parametrize(
    "modules",
    [
        ["opentranscribe_pipeline.drops.batches", "opentranscribe_pipeline.drops.scanner"],
        ["opentranscribe_pipeline.speakers.edits", "opentranscribe_pipeline.speakers.runs"],
    ],
)
def test_engine_packages_load_no_front_end(modules):
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert [m for m in loaded if m.startswith(FRONT_ENDS)] == []
