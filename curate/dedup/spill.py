"""Where each sketched batch's verification data waits until a candidate pair needs it: in
memory while the batches fit a budget, beyond it in ``.npy`` files under the work folder
(memory-mapped when read back).  The persisted index (index.py) keeps the same files.

A batch's data is a dict of arrays, per compared field ``f``:

    f{f}.hv      uint32  shingle hashes in text order (the sorted sets are built in verify.py,
                         only for the records that are in a candidate pair)
    f{f}.seqoff  int64   each record's start in ``hv`` (len records + 1)
    f{f}.n       uint8   each record's shingle size (tokens)
    f{f}.cut     uint8   per token: 1 where a sentence ends
    f{f}.tokoff  int64   each record's start in ``cut``
    preview      uint32  the first PREVIEW_CHARS code points of each record's main text (a
    preview_off  int64   document's text, an SFT record's answer), for the report's examples

An entry of ``Batches`` is that dict, or the path prefix of its files (``<prefix>.<key>.npy``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..writing import link_or_copy

PREVIEW_CHARS = 160


def nbytes(batch: dict) -> int:
    return sum(a.nbytes for a in batch.values())


def array(entry: dict | str, key: str) -> np.ndarray:
    return entry[key] if isinstance(entry, dict) else np.load(f"{entry}.{key}.npy", mmap_mode="r")


def save(entry: dict | str, prefix: str | Path) -> None:
    """Write a batch's files under ``prefix`` (a batch already on disk is hard-linked)."""
    if isinstance(entry, dict):
        for key, arr in entry.items():
            np.save(f"{prefix}.{key}.npy", arr)
        return
    for src in Path(entry).parent.glob(Path(entry).name + ".*.npy"):
        link_or_copy(src, f"{prefix}{src.name[len(Path(entry).name):]}")


class Batches:
    """This run's batches, in order: kept in memory up to ``budget`` bytes, then written out."""

    def __init__(self, work_dir: Path, budget: int):
        self.dir, self.budget, self.in_memory = Path(work_dir), budget, 0
        self.entries: list[dict | str] = []
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)

    def add(self, batch: dict) -> None:
        size = nbytes(batch)
        if self.in_memory + size <= self.budget:
            self.in_memory += size
            self.entries.append(batch)
        else:
            prefix = str(self.dir / f"b{len(self.entries):05d}")
            save(batch, prefix)
            self.entries.append(prefix)


def preview(entry: dict | str, row: int) -> str:
    cps, off = array(entry, "preview"), array(entry, "preview_off")
    return np.asarray(cps[off[row]:off[row + 1]]).astype("<u4").tobytes().decode("utf-32-le", "replace")
