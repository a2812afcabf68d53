"""The persisted dedup index: what an earlier run kept, so a new batch is deduplicated against an
earlier curated set (incremental dedup) without reading that set again.

Layout of an index folder (each part is written to a temporary name and renamed, and
``meta.json`` is rewritten last, so an interrupted update leaves the old index intact):

    meta.json            settings the index was built with + the list of parts
    part-00000/rows.parquet    id, kind, exact hash, has-shingles, length, batch, row, kept
    part-00000/keys.npy        LSH band keys of every row
    part-00000/b00003.f0.hv.npy ...   shingle hashes, sizes, sentence ends, previews (spill.py)

Only rows with ``kept`` are loaded: a record the earlier run dropped is not in its curated set.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from ..writing import write_json, write_parquet
from . import spill

VERSION = 3          # 2: shingle sizes (.n.npy) for the own-part check; 3: shingles in text order, no sets


class IndexMismatch(ValueError):
    """The index was built with settings that make its keys incomparable with this run's."""


def read_meta(index_dir: str | Path) -> dict | None:
    p = Path(index_dir) / "meta.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def check(index_dir: str | Path, signature: dict) -> str | None:
    """A message saying why this index cannot be used with these settings, or None."""
    meta = read_meta(index_dir)
    if meta is None:
        return None
    if meta.get("version") != VERSION:
        return f"index {index_dir} has format version {meta.get('version')}, expected {VERSION}"
    diff = {k: (meta["settings"].get(k), v) for k, v in signature.items() if meta["settings"].get(k) != v}
    if diff:
        what = ", ".join(f"{k}: index {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
        return f"index {index_dir} was built with other dedup settings ({what}); use a new index path or the same settings"
    return None


def load(index_dir: str | Path, signature: dict) -> dict | None:
    """The kept rows of every part: arrays like a sketched batch, plus their batches' spill
    entries (file prefixes)."""
    meta = read_meta(index_dir)
    if meta is None:
        return None
    problem = check(index_dir, signature)
    if problem:
        raise IndexMismatch(problem)
    frames, keys, prefixes = [], [], []
    for part in meta["parts"]:
        pdir = Path(index_dir) / part
        rows = pl.read_parquet(pdir / "rows.parquet")
        k = np.load(pdir / "keys.npy")
        kept = rows["kept"].to_numpy()
        batches = sorted(set(rows["batch"].to_list()))
        remap = {b: len(prefixes) + i for i, b in enumerate(batches)}
        prefixes.extend(str(pdir / f"b{b:05d}") for b in batches)
        frames.append(rows.filter(pl.col("kept")).with_columns(
            pl.col("batch").replace_strict(remap, return_dtype=pl.Int64)))
        keys.append(k[kept])
    if not frames:
        return None
    rows = pl.concat(frames)
    return {"ids": rows["id"], "kind": rows["kind"].to_numpy().astype(np.int8),
            "exact": rows["exact"].to_numpy().astype(np.uint64), "keys": np.concatenate(keys),
            "nonempty": rows["nonempty"].to_numpy(), "length": rows["length"].to_numpy(),
            "batch": rows["batch"].to_numpy(), "row": rows["row"].to_numpy(), "batches": prefixes}


def append(index_dir: str | Path, signature: dict, new: dict, kept: np.ndarray) -> str:
    """Add this run's rows (``new``: ids, kind, exact, keys, nonempty, length, batch, row and the
    batches' spill entries) as a new part; return the part's name."""
    index_dir = Path(index_dir)
    meta = read_meta(index_dir) or {"version": VERSION, "settings": signature, "parts": []}
    name = f"part-{len(meta['parts']):05d}"
    tmp = index_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for b, entry in enumerate(new["batches"]):
        spill.save(entry, tmp / f"b{b:05d}")
    np.save(tmp / "keys.npy", new["keys"])
    write_parquet(tmp / "rows.parquet", pl.DataFrame({
        "id": new["ids"], "kind": new["kind"], "exact": new["exact"], "nonempty": new["nonempty"],
        "length": new["length"], "batch": new["batch"], "row": new["row"], "kept": kept}))
    shutil.rmtree(index_dir / name, ignore_errors=True)
    os.replace(tmp, index_dir / name)
    meta["parts"].append(name)
    write_json(index_dir / "meta.json", meta)
    return name
