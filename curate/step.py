"""The stage contract.  A pipeline is a plain list of steps run top to bottom.

Two kinds of step, both small:

* ``RecordStep`` looks at one record at a time: ``process(rec)`` returns the (possibly changed)
  record to keep it, or a ``Drop`` saying why not.  Record steps run in worker processes over
  batches, so they hold no state between records except ``self.counts`` (a Counter of whatever
  the step wants to report, e.g. which fillers it removed), which the runner sums.
* ``TableStep`` needs the whole set (dedup, balance, mix): ``select(table)`` gets a ``Table``
  over the records kept so far and yields ``(id, Drop)`` for the records to drop.  It never
  rewrites records, so what it drops is always explainable by its reason.

The runner (``pipeline.py``) counts every Drop by step and reason, writes the dropped record
with its reason to the rejects file, and checks that kept + rejected = read for every source.

A step declares its options with defaults in ``defaults``; ``problems(options)`` returns every
thing wrong with them (the config loader lists all problems of all steps at once, before work).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import polars as pl


class Drop(NamedTuple):
    reason: str                        # machine-readable: "<kind>" or "<kind>:<detail>", e.g. "unsafe:violence"
    detail: str = ""                   # human-readable context
    duplicate_of: str | None = None    # for duplicates: the id of the record that was kept
    similarity: float | None = None


@dataclass
class Context:
    """What a step may know about the run besides its own options."""
    seed: int = 0
    work_dir: Path = Path(".")         # a folder of the step's own, for spill files and indexes
    general_sources: frozenset[str] = frozenset()   # sources marked role: general (for mix)
    show_progress: bool = True


class RecordStep:
    name = "record-step"
    defaults: dict = {}

    def __init__(self, options: dict | None = None, ctx: Context | None = None):
        self.options = {**self.defaults, **(options or {})}
        self.ctx = ctx or Context()
        self.counts: Counter = Counter()

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        """Everything wrong with ``options`` (unknown keys and wrong types are checked by the loader)."""
        return []

    def process(self, rec: dict) -> dict | Drop:
        raise NotImplementedError


class Table:
    """The records kept so far, as Parquet parts on disk; read only what you need."""

    def __init__(self, parts: list[Path]):
        self.parts = parts

    def lazy(self) -> pl.LazyFrame:
        from .schema import POLARS_SCHEMA
        if not self.parts:
            return pl.DataFrame(schema=POLARS_SCHEMA).lazy()
        return pl.scan_parquet([str(p) for p in self.parts])

    def columns(self, *names: str) -> pl.DataFrame:
        return self.lazy().select(list(names)).collect()

    def batches(self, batch_size: int = 10_000) -> Iterator[list[dict]]:
        """Whole records in file order, a batch at a time (bounded memory)."""
        from .schema import from_frame
        for p in self.parts:
            df = pl.read_parquet(p)
            for off in range(0, df.height, batch_size):
                yield list(from_frame(df.slice(off, batch_size)))

    def __len__(self) -> int:
        return self.lazy().select(pl.len()).collect().item()


class TableStep:
    name = "table-step"
    defaults: dict = {}

    def __init__(self, options: dict | None = None, ctx: Context | None = None):
        self.options = {**self.defaults, **(options or {})}
        self.ctx = ctx or Context()
        self.counts: Counter = Counter()
        self.report: dict = {}          # anything extra for report.json (histograms, examples)

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        return []

    def select(self, table: Table) -> Iterable[tuple[str, Drop]]:
        raise NotImplementedError
