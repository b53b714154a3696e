"""Switches of the deliverables that are not models: the export files."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class ExportsResource(dg.ConfigurableResource):
    """``exports``: which files the batch's ``publish_batch`` run writes under
    ``<root>/exports/<format>/batch_id=<id>/``. ``enabled: false`` turns them off (the asset
    then writes nothing and says so)."""

    enabled: bool = Field(default=True, description="write subtitle/transcript files at all")
    formats: list[str] = Field(default_factory=lambda: ["srt", "vtt", "txt", "json"], description="srt, vtt, txt, json")

    def chosen_formats(self) -> list[str]:
        from ..deliver.documents import FORMATS

        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise dg.Failure(f"unknown export format(s) {bad}; choose from {list(FORMATS)}")
        return list(self.formats)
