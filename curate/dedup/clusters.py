"""Stage 4: clusters and who stays.

Exact copies first: of a group of records with the same normalized text, the best by the keep
policy stays.  Then near-duplicates, over the verified edges: records are visited best first;
a record nobody has claimed is kept, and claims its still-unclaimed neighbours, which are
dropped as duplicates *of it*.  So every dropped record is directly similar (verified, at least
the threshold) to the record named in its ``duplicate_of``, and a chain a~b~c never removes c
because of a.  A cluster never loses all its members, and records from an earlier curated set
(the persisted index) are never dropped and are visited first, since they are already published.

Keep policies (ties always go to the record seen first):
  ``longest``  the longest answer (or document)
  ``quality``  the highest ``meta[quality_key]``, then the longest
  ``first``    the first seen

    >>> components(4, np.array([0, 2]), np.array([1, 3])).tolist()
    [0, 0, 2, 2]
"""
from __future__ import annotations

import numpy as np

KEEP_POLICIES = ("longest", "quality", "first")


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label of each of n nodes (the smallest node of its component), by min-label propagation
    with pointer jumping: a few vectorized passes even over millions of edges."""
    label = np.arange(n, dtype=np.int64)
    if len(a) == 0:
        return label
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while True:
        m = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, m)
        np.minimum.at(label, b, m)
        while True:                      # pointer jumping: follow labels to their roots
            nxt = label[label]
            if np.array_equal(nxt, label):
                break
            label = nxt
        if np.array_equal(label, before):
            return label


def priority_order(prior: np.ndarray, length: np.ndarray, quality: np.ndarray, policy: str) -> np.ndarray:
    """Node indices best first: earlier-published, then the policy, then first seen."""
    n = len(prior)
    order_key = [np.arange(n)]
    if policy in ("longest", "quality"):
        order_key.append(-length)
    if policy == "quality":
        order_key.append(-np.nan_to_num(quality, nan=-np.inf))
    order_key.append(~prior)
    return np.lexsort(order_key)


def claim(n: int, a: np.ndarray, b: np.ndarray, sim: np.ndarray, order: np.ndarray, prior: np.ndarray):
    """Greedy: visit nodes in ``order``; an unclaimed node is kept and claims its unclaimed,
    not-prior neighbours.  Returns (claimed_by, similarity): -1 for kept nodes."""
    claimed_by = np.full(n, -1, dtype=np.int64)
    claim_sim = np.zeros(n, dtype=np.float32)
    if len(a) == 0:
        return claimed_by, claim_sim
    src = np.concatenate((a, b))
    dst = np.concatenate((b, a))
    ss = np.concatenate((sim, sim))
    by_src = np.argsort(src, kind="stable")
    src, dst, ss = src[by_src], dst[by_src], ss[by_src]
    start = np.searchsorted(src, np.arange(n + 1))
    has_edges = np.diff(start) > 0
    visit = order[has_edges[order]].tolist()
    start_l, dst_l, ss_l, prior_l = start.tolist(), dst.tolist(), ss.tolist(), prior.tolist()
    claimed = claimed_by.tolist()
    done = [False] * n
    for v in visit:
        if claimed[v] != -1:
            continue
        done[v] = True                                  # kept
        for e in range(start_l[v], start_l[v + 1]):
            w = dst_l[e]
            if not done[w] and claimed[w] == -1 and not prior_l[w]:
                claimed[w] = v
                claim_sim[w] = ss_l[e]
    return np.array(claimed, dtype=np.int64), claim_sim


def size_histogram(label: np.ndarray) -> dict[str, int]:
    """How many clusters have 1, 2, 3-4, 5-9, ... members."""
    sizes = np.bincount(np.unique(label, return_inverse=True)[1])
    bins = [(1, 1), (2, 2), (3, 4), (5, 9), (10, 99), (100, 999), (1000, None)]
    out = {}
    for lo, hi in bins:
        m = (sizes >= lo) & (sizes <= (hi if hi is not None else sizes.max() + 1))
        if m.any():
            out[str(lo) if lo == hi else f"{lo}+" if hi is None else f"{lo}-{hi}"] = int(m.sum())
    return out
