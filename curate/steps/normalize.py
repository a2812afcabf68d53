"""normalize step (first cut: passes records through; being built)."""
from __future__ import annotations

from ..step import Drop, RecordStep


class Normalize(RecordStep):
    name = "normalize"
    defaults: dict = {}

    def process(self, rec: dict) -> dict | Drop:
        return rec
