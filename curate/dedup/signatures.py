"""MinHash signatures for a whole batch at once, equal to datasketch's.

datasketch (>= 2.0, default scheme ``affine32``) computes, for every shingle hash ``h`` and every
permutation ``k``: ``fmix32(h) * a[k] + b[k]`` in uint32 (wrapping), and keeps the minimum per
permutation.  We do exactly that, with datasketch's own ``a``/``b`` for the same
``(num_perm, seed)``, but over all shingles of a batch of documents in a few numpy calls instead
of a Python loop per document.  So for any document

    MinHash(num_perm=P, seed=S, hashfunc=shingles.shingle_hash).update_batch(its shingles)

has the same ``hashvalues`` as our row, the rows build ``LeanMinHash`` objects
(``lean_minhash``) and work in ``MinHashLSH``; bands and rows come from datasketch's
``_optimal_param`` (``lsh_params``).  tests/test_dedup_signatures.py checks all of it.

    >>> from curate.dedup.shingles import normalize, shingle_batch
    >>> hv, off, _ = shingle_batch(["你好世界", "你好世界！"], 3, 1)
    >>> sig = minhash_batch(hv, off, permutations(64, seed=1))
    >>> sig.shape, bool((sig[0] == sig[1]).all())
    ((2, 64), True)
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param
from datasketch.minhash import _fmix

from .shingles import mix64

SCHEME = "affine32"
EMPTY = np.uint32(0xFFFFFFFF)        # datasketch's value for a permutation that saw no shingle
_CHUNK = 1 << 12                      # shingles per numpy call: a (num_perm x chunk) block stays in L2


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own permutation parameters (a, b) for this (num_perm, seed)."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_batch(hv: np.ndarray, offsets: np.ndarray, perms: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Signatures (uint32, one row per document) of the shingle hashes ``hv`` split by
    ``offsets``; a document without shingles gets datasketch's empty signature (all 0xFFFFFFFF)."""
    a, b = perms
    n_docs = len(offsets) - 1
    out = np.full((n_docs, len(a)), EMPTY, dtype=np.uint32)
    if hv.size == 0:
        return out
    h = _fmix(hv.astype(np.uint32), 32)
    a_col, b_col = a[:, None], b[:, None]
    has = np.flatnonzero(np.diff(offsets) > 0)
    starts = offsets[has]
    buf = np.empty((len(a), _CHUNK), dtype=np.uint32)
    i = 0
    while i < len(has):
        # take whole documents until the chunk is full (a long document gets a chunk of its own)
        j = max(i + 1, int(np.searchsorted(starts, starts[i] + _CHUNK, side="right")) - 1)
        j = min(j, len(has))
        lo, hi = int(starts[i]), int(offsets[has[j - 1] + 1])
        block = buf[:, :hi - lo] if hi - lo <= _CHUNK else np.empty((len(a), hi - lo), np.uint32)
        np.multiply(a_col, h[None, lo:hi], out=block)
        block += b_col
        out[has[i:j]] = np.minimum.reduceat(block, starts[i:j] - lo, axis=1).T
        i = j
    return out


def lean_minhash(row: np.ndarray, seed: int) -> LeanMinHash:
    """One signature row as a datasketch LeanMinHash (for MinHashLSH, jaccard, serialization)."""
    return LeanMinHash(seed=seed, hashvalues=row, scheme=SCHEME)


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) as datasketch's MinHashLSH chooses them for this threshold."""
    return _optimal_param(threshold, num_perm, weights[0], weights[1])


def band_keys(sigs: list[np.ndarray], bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band).  Several signatures (one per compared field) are
    banded together: a band matches only when it matches in every field, which is how the
    "prompt AND answer" rule keeps a shared prompt template from making one giant bucket."""
    n = sigs[0].shape[0]
    keys = np.zeros((n, bands), dtype=np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    for f, sig in enumerate(sigs):
        blocks = sig[:, :bands * rows].astype(np.uint64).reshape(n, bands, rows)
        for k in range(rows):
            keys = mix64(keys * mult + blocks[:, :, k] + np.uint64(f + 1))
    return keys
