"""safety step (first cut: passes records through; being built)."""
from __future__ import annotations

from ..step import Drop, RecordStep


class Safety(RecordStep):
    name = "safety"
    defaults: dict = {}

    def process(self, rec: dict) -> dict | Drop:
        return rec
