"""dedup step (first cut: drops nothing; being built)."""
from __future__ import annotations

from ..step import Drop, Table, TableStep


class Dedup(TableStep):
    name = "dedup"
    defaults: dict = {}

    def select(self, table: Table):
        return []
