"""Exact n-gram match counts for many (hypothesis, reference) pairs at C speed, and a bit-parallel
LCS length.

These are the per-item statistics behind BLEU, chrF and ROUGE; the metrics themselves are then
computed from them by sacrebleu and by rouge-score's own formulas (see evalkit.metrics).  The
counts are integers, so "identical to sacrebleu / rouge-score" is checked exactly by the tests.

How ``match_counts`` works: the pairs of a chunk are laid out as rows (hypothesis tokens, then
reference tokens, then padding).  Each row's positions are sorted once by the n-gram that starts
there, lexicographically up to the largest order (a few dense token ids packed in one integer key,
the next few through a row-local rank of the key: exact, no hashing).  Then for every order n, equal n-grams are neighbours, told
apart by their common prefix length; per group min(hypothesis count, reference count), summed
over a row, is the clipped match count that BLEU, chrF and ROUGE-N use.

    >>> import numpy as np
    >>> m = match_counts([np.array([1, 2, 3, 1])], [np.array([1, 2, 1])], orders=(1, 2))
    >>> m[1].tolist(), m[2].tolist()
    ([3], [1])
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

_CHUNK_CELLS = 1 << 20   # cells (pairs x padded width) per chunk: bounds memory to ~100 MB


def _chunks(total_len: np.ndarray):
    """Indices of pairs in chunks of similar length, so the padded rectangle wastes little."""
    order = np.argsort(total_len, kind="stable")
    start = 0
    while start < len(order):
        width = max(int(total_len[order[start]]), 1)
        end = start + 1
        while end < len(order):
            width = max(int(total_len[order[end]]), 1)
            if (end - start + 1) * width > _CHUNK_CELLS:
                break
            end += 1
        yield order[start:end]
        start = end


def match_counts(hyps: Sequence[np.ndarray], refs: Sequence[np.ndarray], orders=(1, 2, 3, 4)) -> dict[int, np.ndarray]:
    """For each order n: per pair, sum over distinct n-grams g of min(count_hyp(g), count_ref(g)).

    ``hyps`` and ``refs`` are integer token-id arrays (non-negative; equal id = equal token).
    """
    n_pairs = len(hyps)
    out = {n: np.zeros(n_pairs, dtype=np.int64) for n in orders}
    if n_pairs == 0:
        return out
    hl = np.fromiter((len(h) for h in hyps), dtype=np.int64, count=n_pairs)
    rl = np.fromiter((len(r) for r in refs), dtype=np.int64, count=n_pairs)
    for idx in _chunks(hl + rl):
        counts = _chunk_counts([hyps[i] for i in idx], [refs[i] for i in idx], hl[idx], rl[idx], tuple(orders))
        for n in orders:
            out[n][idx] = counts[n]
    return out


def _dense_ids(flat: np.ndarray) -> np.ndarray:
    """Token ids -> 1..V (order-preserving), so packed keys need as few bits as possible."""
    if flat.size == 0:
        return flat
    if flat.min() < 0:
        raise ValueError("token ids must be non-negative")
    if flat.max() < (1 << 22):   # a lookup table beats a sort
        seen = np.zeros(int(flat.max()) + 1, dtype=np.int64)
        seen[flat] = 1
        return np.cumsum(seen)[flat]
    return np.unique(flat, return_inverse=True)[1].astype(np.int64) + 1


def _chunk_counts(hyps, refs, hl, rl, orders, force_ranks=False) -> dict[int, np.ndarray]:
    """One chunk: sort every row's positions by the n-gram that starts there (lexicographic, up to
    the largest order) once; then for each order, equal n-grams are neighbours, told apart by
    their common prefix length.  Keys: ``per`` tokens packed big-endian in one integer with the
    column in the low bits (so np.sort, not argsort, yields the order); orders above ``per`` go
    through a second sort on (rank of the first ``per`` tokens, rank of the next ``per``)."""
    rows, max_order = len(hyps), max(orders)
    lens = hl + rl
    width = int(lens.max()) + 1
    col = np.arange(width)
    real = col[None, :] < lens[:, None]
    tok = np.zeros((rows, width), dtype=np.int64)          # 0 = padding
    if lens.sum():
        tok[real] = _dense_ids(np.concatenate([np.concatenate([h, r]) for h, r in zip(hyps, refs)]).astype(np.int64))
    bits = max(int(tok.max()).bit_length(), 1)
    wbits = (width - 1).bit_length()
    per = (62 - wbits) // bits
    if force_ranks or min(per, max_order) * bits + wbits > 62 or 2 * per < max_order:
        return _counts_by_ranks(tok, hl, lens, orders)
    per = min(per, max_order)

    head = np.zeros_like(tok)   # tokens i .. i+per-1 packed, first token in the highest bits
    for k in range(per):
        head[:, : width - k] |= tok[:, k:] << ((per - 1 - k) * bits)
    keyed = np.sort((head << wbits) | col, axis=1)
    order = keyed & ((1 << wbits) - 1)
    tail = None
    if max_order > per:   # second sort: (rank of head at i, rank of head at i+per)
        shead = keyed >> wbits
        step = np.zeros(shead.shape, dtype=np.int64)
        step[:, 1:] = shead[:, 1:] != shead[:, :-1]
        rank = np.empty_like(step)
        np.put_along_axis(rank, order, np.cumsum(step, axis=1), axis=1)
        later = np.full_like(rank, width)
        later[:, : width - per] = rank[:, per:]
        keyed = np.sort(((rank * (width + 1) + later) << wbits) | col, axis=1)
        order = keyed & ((1 << wbits) - 1)
        tail = np.zeros_like(head)
        tail[:, : width - per] = head[:, per:]
        tail = np.take_along_axis(tail, order, axis=1)
    head = np.take_along_axis(head, order, axis=1)

    # common prefix length (tokens) with the previous sorted position: the XOR of two packed keys
    # is below 2**((per-1)*bits) when the first tokens agree, and so on
    lcp = np.zeros(head.shape, dtype=np.int8)
    x = head[:, 1:] ^ head[:, :-1]
    for k in range(1, per + 1):
        lcp[:, 1:] += x < (1 << ((per - k) * bits))
    if tail is not None:
        x = np.where(x == 0, tail[:, 1:] ^ tail[:, :-1], -1)   # the tail counts after a full head
        for k in range(1, max_order - per + 1):
            lcp[:, 1:] += (x >= 0) & (x < (1 << ((per - k) * bits)))
    lcp[:, 0] = -1   # each row starts a new group
    return _group_counts(lcp, order, hl, lens, orders)


def _group_counts(lcp, pos, hl, lens, orders) -> dict[int, np.ndarray]:
    """Per order: groups are runs of sorted positions whose common prefix is >= n; a position
    counts for its side when its segment holds n tokens from it."""
    rows, width = pos.shape
    pos = pos.astype(np.int32)
    hl32, lens32 = hl.astype(np.int32)[:, None], lens.astype(np.int32)[:, None]
    # tokens left in the position's segment (hypothesis or reference side), capped for int8
    room_h = np.clip(hl32 - pos, 0, 127).astype(np.int8).ravel()
    room_r = np.where(pos >= hl32, np.clip(lens32 - pos, 0, 127), 0).astype(np.int8).ravel()
    lcp = lcp.ravel()
    out = {}
    for n in orders:
        starts = np.flatnonzero(lcp < n)
        bounds = np.append(starts, lcp.size)
        hyp_c = np.diff(_cumsum0(room_h >= n)[bounds])
        ref_c = np.diff(_cumsum0(room_r >= n)[bounds])
        out[n] = np.bincount(starts // width, weights=np.minimum(hyp_c, ref_c), minlength=rows).astype(np.int64)
    return out


def _counts_by_ranks(tok, hl, lens, orders) -> dict[int, np.ndarray]:
    """Fallback for very long rows or huge vocabularies: one argsort per order, where the n-gram
    at i is ranked from (rank of the (n-1)-gram at i, token at i+n-1); keys stay below width**2."""
    rows, width = tok.shape
    rank1 = _dense_rank(tok)
    rank, out = rank1, {}
    for n in range(1, max(orders) + 1):
        if n > 1:
            nxt = np.full_like(rank1, width)
            nxt[:, : width - n + 1] = rank1[:, n - 1:]
            rank = _dense_rank(rank * (width + 1) + nxt)
        if n in orders:
            order = np.argsort(rank, axis=1, kind="stable")
            sr = np.take_along_axis(rank, order, axis=1)
            lcp = np.zeros(sr.shape, dtype=np.int8)
            lcp[:, 1:] = np.where(sr[:, 1:] == sr[:, :-1], n, 0)
            lcp[:, 0] = -1
            out[n] = _group_counts(lcp, order, hl, lens, (n,))[n]
    return out


def _dense_rank(keys: np.ndarray) -> np.ndarray:
    """Row-wise dense rank (0..width-1) of each cell's key."""
    order = np.argsort(keys, axis=1)
    sk = np.take_along_axis(keys, order, axis=1)
    step = np.zeros(sk.shape, dtype=np.int64)
    step[:, 1:] = sk[:, 1:] != sk[:, :-1]
    ranks = np.empty_like(step)
    np.put_along_axis(ranks, order, np.cumsum(step, axis=1), axis=1)
    return ranks


def _cumsum0(flags: np.ndarray) -> np.ndarray:
    """[0, running count of True...]: group sums are differences of two entries."""
    out = np.zeros(flags.size + 1, dtype=np.int32)
    np.cumsum(flags, dtype=np.int32, out=out[1:])
    return out


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyro 2004) over Python ints.

    About 60x faster than rouge-score's O(n*m) table for 276-token pairs, and the same number.
    """
    if not a or not b:
        return 0
    if len(a) < len(b):   # the bit vector runs over the shorter sequence
        a, b = b, a
    masks: dict = {}
    for i, x in enumerate(b):
        masks[x] = masks.get(x, 0) | (1 << i)
    # Carries only move upward, so bits above len(b) never disturb the low ones: mask once, at the
    # end.  v ^ u == v - u because u is a subset of v.
    full = (1 << len(b)) - 1
    v = full
    get = masks.get
    for y in a:
        m = get(y)
        if m:
            u = v & m
            v = (v + u) | (v ^ u)
    return len(b) - (v & full).bit_count()
