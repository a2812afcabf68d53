"""mix step (first cut: drops nothing; being built)."""
from __future__ import annotations

from ..step import Drop, Table, TableStep


class Mix(TableStep):
    name = "mix"
    defaults: dict = {}

    def select(self, table: Table):
        return []
