"""Sensors: drop detection (``drop_sensor``) and run-failure recording (``record_run_failures``).

See README, "Drop sensor"."""

from .drop_sensor import DropSensorConfig, build_drop_sensor, drop_sensor
from .failures import record_run_failures

__all__ = ["DropSensorConfig", "build_drop_sensor", "drop_sensor", "record_run_failures"]
