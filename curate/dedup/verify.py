"""Stage 3: verify candidate pairs with the exact Jaccard similarity of their shingle sets.

MinHash only proposes; a pair merges only if every compared field (the whole text of a
document; prompt *and* answer of an SFT record) reaches the threshold.  The sets were spilled
by sketch.py as sorted arrays, so one pair costs two binary searches, not a set build.

Then the passage check: Jaccard alone calls two texts that share one long passage duplicates
even when each has passages of its own (two answers that quote the same paragraph, each with its
own advice).  Edits are scattered (a few changed characters break a few shingles), a text of
its own is contiguous.  So a pair that reaches the threshold is still *not* a duplicate when
*both* texts have a run of at least ``passage`` consecutive shingles that the other lacks.
One-sided passages are fine: a copy with a dropped or added sentence is still a copy.

    >>> a = np.array([1, 2, 3, 4], np.uint32); b = np.array([2, 3, 4, 5], np.uint32)
    >>> jaccard(a, b)
    0.6
    >>> novel_run(np.array([9, 8, 7, 1, 2, 3], np.uint32), np.array([1, 2, 3, 4], np.uint32))
    3
"""
from __future__ import annotations

import numpy as np

_OPEN: dict[str, np.ndarray] = {}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted sets of shingle hashes; two empty sets are identical."""
    if len(a) == 0 or len(b) == 0:
        return 1.0 if len(a) == len(b) else 0.0
    if len(a) > len(b):
        a, b = b, a
    idx = np.searchsorted(b, a)
    idx[idx == len(b)] = 0
    inter = int(np.count_nonzero(b[idx] == a))
    return inter / (len(a) + len(b) - inter)


def novel_run(seq: np.ndarray, other_set: np.ndarray) -> int:
    """Longest run of consecutive shingles of ``seq`` (in text order) absent from ``other_set``."""
    if len(seq) == 0:
        return 0
    if len(other_set) == 0:
        return len(seq)
    idx = np.searchsorted(other_set, seq)
    idx[idx == len(other_set)] = 0
    novel = np.concatenate(([0], (other_set[idx] != seq).astype(np.int8), [0]))
    edges = np.diff(novel)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max()) if len(starts) else 0


def both_novel(seq_a: np.ndarray, seq_b: np.ndarray, passage: int) -> bool:
    """Does each text have a passage of at least ``passage`` shingles the other lacks?"""
    set_a = np.unique(seq_a)
    if novel_run(seq_a, np.unique(seq_b)) < passage:
        return False
    return novel_run(seq_b, set_a) >= passage


def _load(path: str) -> np.ndarray:
    arr = _OPEN.get(path)
    if arr is None:
        # a plain ndarray over the mapped file: slicing a np.memmap costs microseconds per call
        arr = _OPEN[path] = np.asarray(np.load(path, mmap_mode="r"))
    return arr


def _span(prefix: str, f: int, what: str, row: int) -> np.ndarray:
    off = _load(f"{prefix}.f{f}.{what}off.npy")
    return _load(f"{prefix}.f{f}.{what}.npy")[off[row]:off[row + 1]]


def pair_similarity(prefixes: list[str], n_fields: np.ndarray, loc_a: np.ndarray, loc_b: np.ndarray,
                    threshold: float = 0.0, passage: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Min over fields of the exact Jaccard, for pairs given as (batch, row) locations
    (``n_fields[p]`` fields for pair p: 1 for documents), and whether a pair that reaches
    ``threshold`` fails the passage check in some field."""
    sims = np.empty(len(loc_a), dtype=np.float32)
    split = np.zeros(len(loc_a), dtype=bool)
    for p in range(len(loc_a)):
        (ba, ra), (bb, rb) = loc_a[p], loc_b[p]
        pa, pb = prefixes[ba], prefixes[bb]
        sim = 1.0
        for f in range(int(n_fields[p])):
            sim = min(sim, jaccard(_span(pa, f, "vals", ra), _span(pb, f, "vals", rb)))
            if sim < threshold:
                break
        sims[p] = sim
        if passage and sim >= threshold:
            split[p] = any(both_novel(_span(pa, f, "seq", ra), _span(pb, f, "seq", rb), passage)
                           for f in range(int(n_fields[p])))
    return sims, split


def forget_open_files() -> None:
    _OPEN.clear()
