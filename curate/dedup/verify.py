"""Stage 3: verify candidate pairs with the exact Jaccard similarity of their shingle sets, then
check that the two texts do not each say something of their own.

MinHash only proposes; a pair merges only if every compared field (the whole text of a
document; prompt *and* answer of an SFT record) reaches the threshold.  The shingle hashes were
spilled by sketch.py in text order; the records that are in some candidate pair get sorted sets
(in threads), so one pair costs a merge walk, in compiled code.

Then the own-part check, because Jaccard alone calls two texts that share one long passage
duplicates even when each adds something of its own (two answers quoting the same paragraph,
each with its own advice; a heading or a closing line of one where the other has another), and
removing either would lose content nobody else has.  Edits are scattered: a changed character
leaves a token or two that the other text lacks.  A text's own content is contiguous.  Parts
are measured in words; a Chinese character counts as half a word (``CJK_PER_WORD``).  With
``own`` = k words (default 2), a pair that reaches the threshold is still *not* a duplicate when

* both texts have a sentence of their own (more than half of it, and at least k words, covered
  by no shared shingle); or
* both have a part of their own of at least k + 1 words at a start or an end; or
* one has a part of its own of at least k words exactly where the other, between the same shared
  neighbours, has one of at least 4k words (one says something else there); or
* one has parts of its own at both its start and its end, k words together (a one-word heading
  and a closing tag), and the other one of at least 4k words at a start or an end; or
* both have a part of their own of at least 4k + 1 words anywhere.

A part only one text has (a copy with a sentence dropped or repeated) is still a copy.  A part
at a start (an end) runs up to the text's first (last) shingle that the other text has too --
except where the other text has nothing of its own before (after) the anchor nearest that edge
(it starts with the passage both share): then a shingle it has only inside that passage, a
common word such as "if" or "the" of one text's own heading, is out of place and does not end
the heading (``edge_parts``).  An edit leaves a token of its own in both texts at the same
place, so it seldom leaves the other side bare.

    >>> words = lambda *runs: np.concatenate([np.arange(*r) for r in runs]).astype(np.uint32)
    >>> shared = (10, 30)                                       # 20 words (shingles of 1) both have
    >>> check = lambda a, b: different(*_sides(a, b), own_rule(2))
    >>> check(words((900, 902), shared), words((500, 512), shared))   # 2 own words where b has 12
    True
    >>> check(words((12, 30)), words((500, 512), shared))     # b minus a sentence and two words
    False
"""
from __future__ import annotations

import numpy as np

from . import spill
from .kernels import different, gather_ragged, sorted_sets_into, verify_pairs
from .threads import thread_map

CJK_PER_WORD = 2          # Chinese characters that count as one word in own-part sizes (as _kernels.c)


def own_rule(words: int) -> np.ndarray:
    """The own-part thresholds (in words) for ``own = words``; all zero switches the check off."""
    k = int(words)
    return np.array([k, k + 1, k, 4 * k, 4 * k + 1], np.int64) if k > 0 else np.zeros(5, np.int64)


class Spill:
    """The spilled batches (spill.py), read for verification: only the records that are in some
    candidate pair, field by field, straight from each batch into compact arrays (no copy of the
    whole spill).  Entry ``e = f * n_docs + g`` is field f of document g (g counts across
    batches); ``local[e]`` its slot in the compact arrays."""

    def __init__(self, entries: list, n_fields: int):
        self.entries, self.n_fields = entries, n_fields
        sizes = [len(spill.array(e, "f0.n")) for e in entries]
        self.batch_start = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        self.n_docs = int(self.batch_start[-1])

    def _gather(self, docs_per_field: list[np.ndarray], workers: int):
        """Sorted sets, ranks, sentence ends and shingle sizes of the given documents (sorted
        global indices, per field), built in ``workers`` threads that fill their parts of arrays
        made here (kernels.sorted_sets_into, gather_ragged)."""
        groups = []                          # (first slot, rows, the batch's hv, seqoff, cut, tokoff, n)
        slot = 0
        for f, docs in enumerate(docs_per_field):
            bounds = np.searchsorted(docs, self.batch_start)
            for b in np.flatnonzero(np.diff(bounds)):
                rows = docs[bounds[b]:bounds[b + 1]] - self.batch_start[b]
                groups.append((slot, rows, *[spill.array(self.entries[b], f"f{f}.{w}")
                                             for w in ("hv", "seqoff", "cut", "tokoff", "n")]))
                slot += len(rows)
        seq_len, cut_len, n = np.zeros(slot, np.int64), np.zeros(slot, np.int64), np.zeros(slot, np.uint8)
        for at, rows, _, seq_off, _, tok_off, sizes in groups:
            seq_len[at:at + len(rows)] = seq_off[rows + 1] - seq_off[rows]
            cut_len[at:at + len(rows)] = tok_off[rows + 1] - tok_off[rows]
            n[at:at + len(rows)] = sizes[rows]
        start, cut_start = (np.concatenate(([0], np.cumsum(x))).astype(np.int64) for x in (seq_len, cut_len))
        vals, rank = np.empty(start[-1], np.uint32), np.empty(start[-1], np.uint32)
        vals_end, cut = np.zeros(slot, np.int64), np.empty(cut_start[-1], np.uint8)

        def fill(group):
            at, rows, hv, seq_off, cuts, tok_off, _ = group
            end = at + len(rows)
            sorted_sets_into(hv, seq_off, rows, start[at:end], vals, vals_end[at:end], rank)
            gather_ragged(cuts, tok_off, rows, cut, cut_start[at:end])

        thread_map(fill, groups, workers)
        return vals, vals_end, rank, start, n, cut, cut_start

    def similarity(self, fields_of: np.ndarray, loc_a: np.ndarray, loc_b: np.ndarray, threshold: float,
                   own: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Min over fields of the exact Jaccard for pairs given as (batch, row) locations
        (``fields_of[p]`` fields for pair p: 1 for documents), and whether a pair that reaches
        ``threshold`` has own parts (``own`` words, 0: no check) that make it two texts."""
        if len(loc_a) == 0:
            return np.zeros(0, np.float32), np.zeros(0, bool)
        rule = own_rule(own)
        ga = self.batch_start[loc_a[:, 0]] + loc_a[:, 1]
        gb = self.batch_start[loc_b[:, 0]] + loc_b[:, 1]
        fields_of = np.ascontiguousarray(fields_of, dtype=np.int64)
        docs = [np.unique(np.concatenate((ga[fields_of > f], gb[fields_of > f]))) for f in range(int(fields_of.max()))]
        local = np.full(self.n_fields * self.n_docs, -1, np.int64)
        local[np.concatenate([d + f * self.n_docs for f, d in enumerate(docs)])] = np.arange(sum(map(len, docs)))
        compact = self._gather(docs, workers)
        run = lambda s: verify_pairs(*compact, local, self.n_docs, fields_of[s], ga[s], gb[s], threshold, rule)
        chunks = [c for c in np.array_split(np.arange(len(loc_a)), max(1, 4 * workers)) if len(c)]
        got = thread_map(run, chunks, workers)              # the kernel releases the GIL
        return np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])


def _sides(seq_a, seq_b, n=1):
    """A pair of texts given as shingle sequences (words), as ``different`` takes them."""
    from .kernels import sorted_sets
    out = []
    for seq in (seq_a, seq_b):
        vals, _, rank = sorted_sets(seq, np.array([0, len(seq)]))
        cut = np.zeros(len(seq) + n - 1, np.uint8)
        cut[-1:] = 1
        out += [vals, rank, cut, n]
    return out

