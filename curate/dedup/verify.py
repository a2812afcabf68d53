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
    if len(seq) == 0 or len(other_set) == 0:
        return len(seq)
    idx = np.searchsorted(other_set, seq)
    idx[idx == len(other_set)] = 0
    shared = np.flatnonzero(other_set[idx] == seq)
    if len(shared) == 0:
        return len(seq)
    # the gaps between shared shingles (and before the first / after the last) are the runs
    return int(max(shared[0], len(seq) - 1 - shared[-1], (np.diff(shared).max() - 1) if len(shared) > 1 else 0))


def _arrays(prefix: str, f: int) -> tuple[np.ndarray, ...]:
    """A spilled batch's sorted sets and shingle sequences, opened once per worker."""
    key = f"{prefix}.f{f}"
    arrs = _OPEN.get(key)
    if arrs is None:
        # plain ndarrays over the mapped files: slicing a np.memmap costs microseconds per call
        arrs = _OPEN[key] = tuple(np.asarray(np.load(f"{key}.{what}.npy", mmap_mode="r"))
                                  for what in ("vals", "valsoff", "seq", "seqoff"))
    return arrs


def pair_similarity(prefixes: list[str], n_fields: np.ndarray, loc_a: np.ndarray, loc_b: np.ndarray,
                    threshold: float = 0.0, passage: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Min over fields of the exact Jaccard, for pairs given as (batch, row) locations
    (``n_fields[p]`` fields for pair p: 1 for documents), and whether a pair that reaches
    ``threshold`` fails the passage check (both texts have a passage of their own) in some field."""
    sims = np.empty(len(loc_a), dtype=np.float32)
    split = np.zeros(len(loc_a), dtype=bool)
    for p, ((ba, ra), (bb, rb)) in enumerate(zip(loc_a.tolist(), loc_b.tolist())):
        sim, views = 1.0, []
        for f in range(int(n_fields[p])):
            va, vo, sa, so = _arrays(prefixes[ba], f)
            wa, wo, sb, sbo = _arrays(prefixes[bb], f)
            set_a, set_b = va[vo[ra]:vo[ra + 1]], wa[wo[rb]:wo[rb + 1]]
            sim = min(sim, jaccard(set_a, set_b))
            if sim < threshold:
                break
            views.append((set_a, set_b, sa[so[ra]:so[ra + 1]], sb[sbo[rb]:sbo[rb + 1]]))
        sims[p] = sim
        if passage and sim >= threshold:
            split[p] = any(novel_run(seq_a, set_b) >= passage and novel_run(seq_b, set_a) >= passage
                           for set_a, set_b, seq_a, seq_b in views)
    return sims, split


def forget_open_files() -> None:
    _OPEN.clear()
