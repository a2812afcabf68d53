"""MinHash parameters and interop with datasketch.

datasketch (>= 2.0, default scheme ``affine32``) computes, for every shingle hash ``h`` and every
permutation ``k``: ``fmix32(h) * a[k] + b[k]`` in uint32 (wrapping), and keeps the minimum per
permutation.  ``kernels.sketch`` does exactly that with datasketch's ``a``/``b`` for the same
``(num_perm, seed)``, fused with shingling, so for any document

    MinHash(num_perm=P, seed=S, hashfunc=shingles.shingle_hash).update_batch(its shingles)

has the same ``hashvalues`` as our row; the rows build ``LeanMinHash`` objects
(``lean_minhash``) and work in ``MinHashLSH``; bands and rows are datasketch's ``_optimal_param``
(``lsh_params``).  tests/test_dedup_signatures.py checks all of it.

Why ``permutations`` and ``lsh_params`` repeat datasketch's few lines (its random draws; its
error integrals) instead of calling it: ``import datasketch`` imports scipy.integrate, 1.3 s,
a third of a 100k-document run.  The tests compare both with datasketch itself.

    >>> from curate.dedup.shingles import sketch_texts
    >>> hv, off, exact, sig, *_ = sketch_texts(["你好世界", "你好世界！"], 3, 1, permutations(64, seed=1))
    >>> sig.shape, bool((sig[0] == sig[1]).all())
    ((2, 64), True)
    >>> lsh_params(0.45, 128)
    (25, 5)
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import kernels

SCHEME = "affine32"


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters (a, b) for this (num_perm, seed), scheme affine32:
    ``MinHash._init_permutations`` draws them from ``RandomState(seed)`` in this order."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _integral(f, lo: float, hi: float) -> float:
    # Gauss-Legendre with 64 nodes: the integrands are smooth polynomials in s of degree <= 128
    # whose optimum is compared across (b, r); 64 nodes match scipy's quad to ~1e-12 here.
    x, w = _NODES
    s = (hi - lo) / 2 * x + (hi + lo) / 2
    return float((hi - lo) / 2 * np.dot(w, f(s)))


_NODES = np.polynomial.legendre.leggauss(64)


@lru_cache(maxsize=32)
def lsh_params(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """(bands, rows) as datasketch's MinHashLSH chooses them for this threshold
    (``datasketch.lsh._optimal_param``: least weighted false positive + false negative area)."""
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integral(lambda s: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)
            fn = _integral(lambda s: (1 - s ** float(r)) ** float(b), threshold, 1.0)
            err = fp * weights[0] + fn * weights[1]
            if err < best:
                best, opt = err, (b, r)
    return opt


def lean_minhash(row: np.ndarray, seed: int):
    """One signature row as a datasketch LeanMinHash (for MinHashLSH, jaccard, serialization)."""
    from datasketch import LeanMinHash
    return LeanMinHash(seed=seed, hashvalues=row, scheme=SCHEME)


def band_keys(sigs: list[np.ndarray], bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band).  Several signatures (one per compared field) are
    banded together: a band matches only when it matches in every field, which is how the
    "prompt AND answer" rule keeps a shared prompt template from making one giant bucket."""
    return kernels.band_keys(np.stack([np.ascontiguousarray(s) for s in sigs]), bands, rows)
