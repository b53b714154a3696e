"""The quality step's model: DNSMOS P.835 from the speechmos wheel, run with onnxruntime."""

from __future__ import annotations

from contextlib import AbstractContextManager

import dagster as dg
from pydantic import Field

from .. import settings

QUALITY_STEP_VERSION = "quality/1"  # bump when a change to speech/quality.py changes what it writes


class QualityModelResource(dg.ConfigurableResource):
    """DNSMOS on the CPU, one onnxruntime session per run. ``threads`` bounds its intra-op
    threads (the step runs beside CPU stages); ``floor`` overrides
    ``OPENTRANSCRIBE_QUALITY_FLOOR`` (DNSMOS ovrl counted as usable speech);
    ``dnsmos_stride`` trades coverage for time and ``dnsmos_variant`` picks the int8 run
    (default, ~0.5 x the CPU) or the model as shipped ("fp32") (docs/quality.md, *Cost*)."""

    threads: int = Field(default=2, description="onnxruntime intra-op threads for DNSMOS")
    floor: float | None = Field(
        default=None, description="DNSMOS ovrl floor; unset: OPENTRANSCRIBE_QUALITY_FLOOR (3.0)"
    )
    dnsmos_stride: int = Field(
        default=1,
        ge=1,
        description="score one DNSMOS window in N of each speaker's speech (1: every segment; 2: about half the cost)",
    )
    dnsmos_variant: str = Field(
        default="int8",
        pattern="^(int8|fp32)$",
        description="DNSMOS run: int8 (conv2d_1-3 quantized, default) or fp32 (the model as shipped)",
    )

    def quality_floor(self) -> float:
        return self.floor if self.floor is not None else settings.quality_floor()

    def model_name(self) -> str:
        from ..speech.quality import dnsmos_version

        return dnsmos_version(self.dnsmos_variant)

    def model_version(self) -> str:
        """Changes whenever the rows could: the model file, the step's code, the floor."""
        return f"{self.model_name()}|{QUALITY_STEP_VERSION}|floor={self.quality_floor():g}|stride={self.dnsmos_stride}"

    def model_columns(self) -> dict[str, str]:
        return {"model": self.model_name()}

    def load(self) -> AbstractContextManager:
        from ..speech.quality import dnsmos_session

        return dnsmos_session(self.threads, self.dnsmos_variant)
