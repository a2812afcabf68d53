"""Candidate pairs from LSH band keys, vectorized: sort each band's keys, and every run of equal
keys is a bucket of documents that agree on all rows of that band.

A bucket of k documents would give k*(k-1)/2 pairs; a big bucket (a shared template, a stock
answer) would explode.  So a small bucket gives all its pairs and a big one gives a star (every
member with the first) plus a chain (each member with the next): enough for connected
components when members really are similar, and linear in k when they are not.

    >>> keys = np.array([[1, 7], [1, 8], [2, 8], [3, 9]], dtype=np.uint64)
    >>> candidate_pairs(keys).tolist()
    [[0, 1], [1, 2]]
"""
from __future__ import annotations

import numpy as np

from .threads import thread_map

ALL_PAIRS_UP_TO = 8     # buckets up to this size give every pair


def _bucket_pairs(order: np.ndarray, keys_sorted: np.ndarray) -> np.ndarray:
    new = np.concatenate(([True], keys_sorted[1:] != keys_sorted[:-1]))
    starts = np.flatnonzero(new)
    sizes = np.diff(np.concatenate((starts, [len(keys_sorted)])))
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    if not len(starts):
        return np.zeros((0, 2), dtype=np.int64)
    out = []
    # star: every member with the bucket's first member
    first = np.repeat(starts, sizes - 1)
    member = first + (np.arange(int((sizes - 1).sum())) - np.repeat(np.cumsum(sizes - 1) - (sizes - 1), sizes - 1)) + 1
    out.append(np.stack((order[first], order[member]), axis=1))
    big = sizes > ALL_PAIRS_UP_TO
    # chain in big buckets: member i with member i+1
    if big.any():
        bs, bz = starts[big], sizes[big]
        a = np.repeat(bs, bz - 2) + (np.arange(int((bz - 2).sum())) - np.repeat(np.cumsum(bz - 2) - (bz - 2), bz - 2)) + 1
        out.append(np.stack((order[a], order[a + 1]), axis=1))
    # every other pair in small buckets (k <= 8): at most 28 per bucket
    small = (sizes > 2) & ~big
    for k in np.unique(sizes[small]):
        st = starts[small][sizes[small] == k]
        iu, ju = np.triu_indices(int(k), 1)
        keep = iu > 0                      # pairs with the first member are in the star already
        idx_a = st[:, None] + iu[keep][None, :]
        idx_b = st[:, None] + ju[keep][None, :]
        out.append(np.stack((order[idx_a.ravel()], order[idx_b.ravel()]), axis=1))
    return np.concatenate(out)


def candidate_pairs(keys: np.ndarray, eligible: np.ndarray | None = None, workers: int = 1) -> np.ndarray:
    """Unique (i, j) pairs, i < j, of rows of ``keys`` (n x bands) that share a bucket in any
    band.  Rows where ``eligible`` is False (no shingles, exact copies) take no part.  Bands are
    sorted in ``workers`` threads (numpy's sort releases the GIL)."""
    rows = np.arange(keys.shape[0]) if eligible is None else np.flatnonzero(eligible)
    if len(rows) < 2:
        return np.zeros((0, 2), dtype=np.int64)

    def band_pairs(band: int) -> np.ndarray:
        k = keys[rows, band]
        order = np.argsort(k)               # equal keys in any order: a bucket is a set
        return _bucket_pairs(rows[order], k[order])

    found = [p for p in thread_map(band_pairs, range(keys.shape[1]), workers) if len(p)]
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    pairs.sort(axis=1)
    packed = np.unique(pairs[:, 0].astype(np.int64) << 32 | pairs[:, 1].astype(np.int64))
    return np.stack((packed >> 32, packed & 0xFFFFFFFF), axis=1)
