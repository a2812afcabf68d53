"""Stage 3: verify candidate pairs with the exact Jaccard similarity of their shingle sets.

MinHash only proposes; a pair merges only if every compared field (the whole text of a
document; prompt *and* answer of an SFT record) reaches the threshold.  The sets were spilled
by sketch.py as sorted arrays, so one pair costs two binary searches, not a set build.

    >>> a = np.array([1, 2, 3, 4], np.uint32); b = np.array([2, 3, 4, 5], np.uint32)
    >>> jaccard(a, b)
    0.6
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


def _load(path: str) -> np.ndarray:
    arr = _OPEN.get(path)
    if arr is None:
        arr = _OPEN[path] = np.load(path, mmap_mode="r")
    return arr


def pair_similarity(prefixes: list[str], n_fields: np.ndarray, loc_a: np.ndarray, loc_b: np.ndarray) -> np.ndarray:
    """Min over fields of the exact Jaccard, for pairs given as (batch, row) locations.
    ``n_fields[p]`` is how many fields pair p compares (1 for documents)."""
    out = np.empty(len(loc_a), dtype=np.float32)
    for p in range(len(loc_a)):
        (ba, ra), (bb, rb) = loc_a[p], loc_b[p]
        sim = 1.0
        for f in range(int(n_fields[p])):
            oa, ob = _load(f"{prefixes[ba]}.f{f}.off.npy"), _load(f"{prefixes[bb]}.f{f}.off.npy")
            va, vb = _load(f"{prefixes[ba]}.f{f}.vals.npy"), _load(f"{prefixes[bb]}.f{f}.vals.npy")
            sim = min(sim, jaccard(va[oa[ra]:oa[ra + 1]], vb[ob[rb]:ob[rb + 1]]))
            if sim == 0.0:
                break
        out[p] = sim
    return out


def forget_open_files() -> None:
    _OPEN.clear()
