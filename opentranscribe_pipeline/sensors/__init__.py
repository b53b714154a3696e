"""Sensors: drop detection and run-failure handling (see README, "Automation")."""
