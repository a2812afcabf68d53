"""history step (first cut: passes records through; being built)."""
from __future__ import annotations

from ..step import Drop, RecordStep


class History(RecordStep):
    name = "history"
    defaults: dict = {}

    def process(self, rec: dict) -> dict | Drop:
        return rec
