"""What a lookup raises on bad input: the message plus the candidates it could mean."""

from __future__ import annotations

import polars as pl

from ..speakers.names import shown_name

SHOWN_CANDIDATES = 20


class QueryError(LookupError):
    """Bad input for a lookup; ``candidates`` (a frame, possibly empty) is what it could mean."""

    def __init__(self, message: str, candidates: pl.DataFrame | None = None):
        self.message = message
        self.candidates = candidates if candidates is not None else pl.DataFrame()
        super().__init__(message)

    def __str__(self) -> str:
        c = self.candidates
        if c.is_empty():
            return self.message
        lines = [self.message]
        for row in c.head(SHOWN_CANDIDATES).iter_rows():
            lines.append("  " + "  ".join("-" if v is None else shown_name(str(v)) for v in row))  # one line each
        if c.height > SHOWN_CANDIDATES:
            lines.append(f"  ... and {c.height - SHOWN_CANDIDATES} more")
        return "\n".join(lines)


class NoMatch(QueryError):
    """Nothing matches (the candidates, if any, are what exists nearby)."""


class Ambiguous(QueryError):
    """Several things match: ``candidates`` lists them; say which."""
