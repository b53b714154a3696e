"""The quality step's model: DNSMOS P.835 from the speechmos wheel, run with onnxruntime."""

from __future__ import annotations

from contextlib import AbstractContextManager

import dagster as dg
from pydantic import Field

from .. import settings

QUALITY_STEP_VERSION = "quality/1"  # bump when a change to speech/quality.py changes what it writes


class QualityModelResource(dg.ConfigurableResource):
    """DNSMOS on the CPU, one onnxruntime session per run. Every field holds the value a run
    uses (the UI shows it): ``threads`` bounds its intra-op threads (1 costs the least CPU
    per window; the step runs beside CPU stages); ``floor`` is the DNSMOS ovrl counted as usable
    speech (default: ``OPENTRANSCRIBE_QUALITY_FLOOR``, else 3.0); ``dnsmos_stride`` trades
    coverage for time and ``dnsmos_variant`` picks the int8 run (default, ~0.3 x the CPU) or
    the model as shipped ("fp32") (docs/quality.md, *Cost*)."""

    threads: int = Field(
        default=1, ge=1, description="onnxruntime intra-op threads for DNSMOS (1: the least CPU per window)"
    )
    floor: float = Field(
        default_factory=settings.quality_floor,
        ge=1.0,
        le=5.0,
        description="DNSMOS ovrl floor (1-5) for speech counted as usable (default: OPENTRANSCRIBE_QUALITY_FLOOR, else 3.0)",
    )
    dnsmos_stride: int = Field(
        default=1,
        ge=1,
        description="score one DNSMOS window in N of each speaker's speech (1: every segment; 2: about half the cost)",
    )
    dnsmos_variant: str = Field(
        default="int8",
        pattern="^(int8|fp32)$",
        description="DNSMOS run: int8 (conv2d_1-3 with their ReLUs quantized, default) or fp32 (the model as shipped)",
    )

    def quality_floor(self) -> float:
        return self.floor

    def model_name(self) -> str:
        from ..speech.dnsmos import dnsmos_version

        return dnsmos_version(self.dnsmos_variant)

    def model_version(self) -> str:
        """Changes whenever the rows could: the model file, the step's code, the floor."""
        return f"{self.model_name()}|{QUALITY_STEP_VERSION}|floor={self.quality_floor():g}|stride={self.dnsmos_stride}"

    def model_columns(self) -> dict[str, str]:
        return {"model": self.model_name()}

    def load(self) -> AbstractContextManager:
        from ..speech.dnsmos import dnsmos_session

        return dnsmos_session(self.threads, self.dnsmos_variant)
