"""Statistics for expert review: Krippendorff's alpha, Cohen's kappa, Spearman's rho and means with
bootstrap intervals.  Plain numpy, checked in the tests against the ``krippendorff`` package,
scipy and worked examples from the literature.

    >>> krippendorff_alpha([[1, 2, 3], [1, 2, 4]], "ordinal")      # rows: annotators, columns: items
    >>> cohen_kappa(["a", "b", "a"], ["a", "b", "b"])
    >>> spearman([1, 2, 3, 4], [1, 3, 2, 4])                        # 0.8
    >>> mean_ci([3, 4, 5, 4], seed=0)                               # (mean, low, high)

Missing ratings are ``None`` or NaN.  Every function returns None where the statistic is undefined
(no variation, fewer than two pairable values) instead of a misleading number.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def krippendorff_alpha(data: Sequence[Sequence], level: str = "ordinal") -> float | None:
    """Krippendorff's alpha for reliability data (rows = annotators, columns = units/items).

    Built on the coincidence matrix (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"):
    units with fewer than two values are not pairable and drop out; each pair of values within a
    unit adds 1/(m_u - 1).  The ordinal distance uses the marginal frequencies n_g of the values,
    so it depends only on the order of the values, not on their spacing.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    units = list(zip(*data)) if len(data) else []
    values = sorted({v for unit in units for v in unit if not _is_missing(v)}, key=_sort_key)
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = np.zeros((k, k))
    for unit in units:
        present = [index[v] for v in unit if not _is_missing(v)]
        m = len(present)
        if m < 2:
            continue
        counts = np.bincount(present, minlength=k).astype(float)
        # ordered pairs of distinct coders: n_c*n_k, minus the self-pairs on the diagonal
        o += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n <= 1:
        return None
    delta = _distance(level, values, n_c)
    observed = (o * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    if expected == 0:
        return None
    return float(1.0 - observed / expected)


def _sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def _distance(level: str, values: list, n_c: np.ndarray) -> np.ndarray:
    k = len(values)
    if level == "nominal":
        return 1.0 - np.eye(k)
    x = np.array([float(v) for v in values])
    if level == "interval":
        return (x[:, None] - x[None, :]) ** 2
    if level == "ratio":
        s = x[:, None] + x[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = ((x[:, None] - x[None, :]) / s) ** 2
        return np.where(s == 0, 0.0, d)
    # ordinal: (sum of n_g for g from c to k, minus half of n_c and n_k) squared
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    d = np.zeros((k, k))
    for c in range(k):
        for e in range(k):
            lo, hi = min(c, e), max(c, e)
            d[c, e] = (cum[hi + 1] - cum[lo] - (n_c[c] + n_c[e]) / 2.0) ** 2
    return d


def cohen_kappa(a: Sequence, b: Sequence, weights: str | None = None) -> float | None:
    """Cohen's kappa between two annotators over the items both rated (pairs with a missing value
    are skipped).  ``weights``: None (unweighted), 'linear' or 'quadratic' (ordinal data, using the
    numeric distance between values)."""
    pairs = [(x, y) for x, y in zip(a, b) if not _is_missing(x) and not _is_missing(y)]
    if len(pairs) < 2:
        return None
    cats = sorted({v for p in pairs for v in p}, key=_sort_key)
    idx = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    obs = np.zeros((k, k))
    for x, y in pairs:
        obs[idx[x], idx[y]] += 1
    obs /= obs.sum()
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    if weights is None:
        w = 1.0 - np.eye(k)
    else:
        x = np.array([float(c) for c in cats])
        diff = np.abs(x[:, None] - x[None, :])
        w = diff if weights == "linear" else diff ** 2
    denom = (w * exp).sum()
    if denom == 0:
        return None
    return float(1.0 - (w * obs).sum() / denom)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks, so ties are handled) over pairs where both exist."""
    pairs = [(a, b) for a, b in zip(x, y) if not _is_missing(a) and not _is_missing(b)]
    if len(pairs) < 3:
        return None
    rx = _average_ranks(np.array([p[0] for p in pairs], dtype=float))
    ry = _average_ranks(np.array([p[1] for p in pairs], dtype=float))
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denom == 0:
        return None
    return float((rx * ry).sum() / denom)


def mean_ci(values: Sequence[float], *, weights: Sequence[float] | None = None, resamples: int = 2000,
            seed: int = 0, level: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): the (optionally weighted) mean and its percentile bootstrap interval,
    resampling the values given (one per item, so annotators of the same item move together).
    The resampling is evalkit auto's (evalkit.stats.bootstrap_ci), so human and automatic
    intervals are computed the same way."""
    from ..stats import bootstrap_ci
    keep = [i for i, v in enumerate(values) if not _is_missing(v)]
    if not keep:
        return None, None, None
    x = np.array([values[i] for i in keep], dtype=float)
    w = np.ones(len(x)) if weights is None else np.array([weights[i] for i in keep], dtype=float)
    mean = float((x * w).sum() / w.sum())
    if len(x) == 1:
        return mean, None, None
    low, high = bootstrap_ci(np.column_stack([x * w, w]), lambda sums, n: sums[0] / sums[1],
                             n_resamples=resamples, seed=seed, level=level)
    return mean, low, high
