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

import numba as nb
import numpy as np

from . import spill
from .kernels import gather_ragged, jaccard as _jaccard, sorted_sets_into
from .threads import thread_map

CJK_PER_WORD = 2          # Chinese characters that count as one word in own-part sizes

_jit = nb.njit(cache=True, nogil=True, boundscheck=False)


def own_rule(words: int) -> np.ndarray:
    """The own-part thresholds (in words) for ``own = words``; all zero switches the check off."""
    k = int(words)
    return np.array([k, k + 1, k, 4 * k, 4 * k + 1], np.int64) if k > 0 else np.zeros(5, np.int64)


@_jit
def match(set_a, set_b):
    """Merge two sorted sets: for each value of A its index in B (-1: absent), and vice versa."""
    in_b = np.full(len(set_a), -1, np.int64)
    in_a = np.full(len(set_b), -1, np.int64)
    i = j = 0
    while i < len(set_a) and j < len(set_b):
        if set_a[i] < set_b[j]:
            i += 1
        elif set_a[i] > set_b[j]:
            j += 1
        else:
            in_b[i], in_a[j] = j, i
            i += 1
            j += 1
    return in_b, in_a


@_jit
def occurrences(rank, n_unique):
    """How often each value of a text's set occurs in its text, and where first and last."""
    count = np.zeros(n_unique, np.int64)
    first = np.full(n_unique, -1, np.int64)
    last = np.full(n_unique, -1, np.int64)
    for i in range(len(rank)):
        r = rank[i]
        count[r] += 1
        if first[r] < 0:
            first[r] = i
        last[r] = i
    return count, first, last


@_jit
def _tokens_of_run(run, inside, n):
    """Tokens covered by no shared shingle in a run of ``run`` unshared shingles (size n):
    inside a text n-1 of them only straddle a shared neighbour."""
    return max(run - (n - 1), 0) if inside else run


@_jit
def _anchor(rank_a, in_b, count_a, count_b, first_b, j, step):
    """From A's position j walking by ``step``: the nearest shared shingle that occurs once in
    each text; (its position in A, its position in B), or (-2, -2) if there is none."""
    while 0 <= j < len(rank_a):
        u = rank_a[j]
        v = in_b[u]
        if v >= 0 and count_a[u] == 1 and count_b[v] == 1:
            return j, first_b[v]
        j += step
    return -2, -2


@_jit
def _bare(rank_b, in_a, lo, hi):
    """Has B nothing of its own in its shingles lo..hi-1?"""
    for i in range(lo, hi):
        if in_a[rank_b[i]] < 0:
            return False
    return True


@_jit
def edge_parts(rank_a, in_b, count_a, rank_b, in_a, count_b, first_b, last_b):
    """A's parts of its own at its start and at its end, in tokens: the run of shingles B lacks
    before A's first shared shingle (after its last).  Where B has nothing of its own before
    (after) the anchor nearest that edge, the part runs on to that anchor over shared shingles
    that B has only on the anchor's other side: such a shingle is out of place (a common word of
    A's own heading or closing line that B uses in the passage both share), not shared text."""
    m = len(rank_a)
    ja, jb = _anchor(rank_a, in_b, count_a, count_b, first_b, 0, 1)
    ka, kb = _anchor(rank_a, in_b, count_a, count_b, first_b, m - 1, -1)
    bare_start = ja >= 0 and _bare(rank_b, in_a, 0, jb)
    bare_end = ka >= 0 and _bare(rank_b, in_a, kb + 1, len(rank_b))
    start = 0
    while start < m:
        v = in_b[rank_a[start]]
        if v >= 0 and (not bare_start or start >= ja or first_b[v] < jb):
            break
        start += 1
    end = 0
    while end < m:
        v = in_b[rank_a[m - 1 - end]]
        if v >= 0 and (not bare_end or m - 1 - end <= ka or last_b[v] > kb):
            break
        end += 1
    return start, end


@_jit
def _own_in_region(rank_b, in_a, mark, lo, hi, n_b):
    """Longest part of B's own (tokens) in B's shingles lo..hi-1, against the values of A marked
    in ``mark`` (what A says between the same anchors); B's shingles lo-1 and hi are anchors."""
    best, prev = 0, lo - 1
    for i in range(lo, hi + 1):
        if i < hi:
            u = in_a[rank_b[i]]
            if u < 0 or not mark[u]:
                continue
        run = i - prev - 1
        if run > 0:
            best = max(best, _tokens_of_run(run, prev >= 0 and i < len(rank_b), n_b))
        prev = i
    return best


@_jit
def own_parts(rank_a, in_b, count_a, rank_b, in_a, count_b, first_b, n_a, n_b, short_min, long_min):
    """Parts of text A of its own: runs of A's shingles (text order; ``rank_a`` indexes A's set,
    ``in_b`` maps it to B's set or -1) that B lacks, in tokens (``_tokens_of_run``).  Returns
    ``(longest, longest at a start or end, replaced)``: ``replaced`` when some part of at least
    ``short_min`` tokens stands where B has a part of its own of at least ``long_min`` tokens --
    "where" = between the same anchors, the nearest shared shingles that occur once in each text
    (or the texts' starts / ends), so a common word or a repeated sentence cannot misplace it."""
    m = len(rank_a)
    longest, at_end, replaced, prev = 0, 0, False, -1
    mark = np.zeros(len(in_b), np.bool_)
    for i in range(m + 1):
        if i < m and in_b[rank_a[i]] < 0:
            continue
        run = i - prev - 1
        if run > 0:
            inside = prev >= 0 and i < m
            u = _tokens_of_run(run, inside, n_a)
            longest = max(longest, u)
            if not inside:
                at_end = max(at_end, u)
            if long_min > 0 and u >= short_min and not replaced:
                a_lo, left = (-1, -1) if prev < 0 else _anchor(rank_a, in_b, count_a, count_b, first_b, prev, -1)
                a_hi, right = (m, len(rank_b)) if i >= m else _anchor(rank_a, in_b, count_a, count_b, first_b, i, 1)
                if a_lo == -2:                     # no anchor before it: the region runs from the starts
                    a_lo, left = -1, -1
                if a_hi == -2:                     # ... after it: to the ends
                    a_hi, right = m, len(rank_b)
                if right > left + 1:
                    for k in range(a_lo + 1, a_hi):
                        mark[rank_a[k]] = True
                    replaced = _own_in_region(rank_b, in_a, mark, left + 1, right, n_b) >= long_min
                    for k in range(a_lo + 1, a_hi):
                        mark[rank_a[k]] = False
        prev = i
    return longest, at_end, replaced


@_jit
def own_sentence(rank_a, in_b, cut, min_tokens):
    """Does text A have a sentence of its own: one with more than half of its tokens, and at
    least ``min_tokens``, covered by no shingle text B has?  ``cut``: per token of A, 1 where a
    sentence ends."""
    n_tok, m = len(cut), len(rank_a)
    if m == 0:
        return False
    width = n_tok - m + 1                          # tokens per shingle (all of a short text)
    covered_until, start, covered = -1, 0, 0
    for t in range(n_tok):
        if t < m and in_b[rank_a[t]] >= 0:         # the shingle starting at t covers t..t+width-1
            covered_until = t + width - 1
        if covered_until >= t:
            covered += 1
        if cut[t]:
            size = t + 1 - start
            if 2 * covered < size and size - covered >= min_tokens:
                return True
            start, covered = t + 1, 0
    return False


@_jit
def _framed(start, end, min_tokens):
    """Parts of its own at both the start and the end of a text, ``min_tokens`` together."""
    return start > 0 and end > 0 and start + end >= min_tokens


@_jit
def _words(k, n):
    """``k`` words in tokens of a text with shingle size n (n > 1: CJK majority, characters)."""
    return k * CJK_PER_WORD if n > 1 else k


@_jit
def different(set_a, rank_a, cut_a, n_a, set_b, rank_b, cut_b, n_b, rule):
    """The own-part check of verify.py's docstring for one field of a pair; ``rule`` from own_rule."""
    sentence, ends, short, long, anywhere = rule[0], rule[1], rule[2], rule[3], rule[4]
    in_b, in_a = match(set_a, set_b)
    if sentence > 0 and own_sentence(rank_a, in_b, cut_a, _words(sentence, n_a)) \
            and own_sentence(rank_b, in_a, cut_b, _words(sentence, n_b)):
        return True
    count_a, first_a, last_a = occurrences(rank_a, len(set_a))
    count_b, first_b, last_b = occurrences(rank_b, len(set_b))
    la, ea, ra = own_parts(rank_a, in_b, count_a, rank_b, in_a, count_b, first_b, n_a, n_b,
                           _words(short, n_a), _words(long, n_b))
    if ra:
        return True
    lb, eb, rb = own_parts(rank_b, in_a, count_b, rank_a, in_b, count_a, first_a, n_b, n_a,
                           _words(short, n_b), _words(long, n_a))
    if rb:
        return True
    sa, za = edge_parts(rank_a, in_b, count_a, rank_b, in_a, count_b, first_b, last_b)
    sb, zb = edge_parts(rank_b, in_a, count_b, rank_a, in_b, count_a, first_a, last_a)
    ea, eb = max(ea, sa, za), max(eb, sb, zb)
    if ends > 0 and ea >= _words(ends, n_a) and eb >= _words(ends, n_b):
        return True
    if long > 0 and (_framed(sa, za, _words(short, n_a)) and max(sb, zb) >= _words(long, n_b)
                     or _framed(sb, zb, _words(short, n_b)) and max(sa, za) >= _words(long, n_a)):
        return True
    return anywhere > 0 and la >= _words(anywhere, n_a) and lb >= _words(anywhere, n_b)


@_jit
def verify(vals, vals_end, rank, start, n, cut, cut_start, local, n_docs, fields_of, ga, gb, threshold, rule):
    """Pairs p = documents ga[p] ~ gb[p]; field f of document g is entry ``e = f * n_docs + g``,
    at slot ``i = local[e]`` of the compact arrays (Spill._gather): set
    ``vals[start[i]:vals_end[i]]``, ranks ``rank[start[i]:start[i+1]]``, sentence ends
    ``cut[cut_start[i]:cut_start[i+1]]``, shingle size ``n[i]``.  Returns the min over
    the pair's ``fields_of[p]`` fields of the exact Jaccard (stopping below ``threshold``), and
    for pairs that reach it whether the own-part check (``different``) finds them different in
    some field."""
    n_pairs = len(ga)
    sims = np.empty(n_pairs, np.float32)
    split = np.zeros(n_pairs, np.bool_)
    check = rule.max() > 0
    for p in range(n_pairs):
        sim = 1.0
        for f in range(fields_of[p]):
            i, j = local[f * n_docs + ga[p]], local[f * n_docs + gb[p]]
            sim = min(sim, _jaccard(vals[start[i]:vals_end[i]], vals[start[j]:vals_end[j]]))
            if sim < threshold:
                break
        sims[p] = sim
        if sim < threshold or not check:
            continue
        for f in range(fields_of[p]):
            i, j = local[f * n_docs + ga[p]], local[f * n_docs + gb[p]]
            if different(vals[start[i]:vals_end[i]], rank[start[i]:start[i + 1]],
                         cut[cut_start[i]:cut_start[i + 1]], n[i],
                         vals[start[j]:vals_end[j]], rank[start[j]:start[j + 1]],
                         cut[cut_start[j]:cut_start[j + 1]], n[j], rule):
                split[p] = True
                break
    return sims, split


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
        run = lambda s: verify(*compact, local, self.n_docs, fields_of[s], ga[s], gb[s], float(threshold), rule)
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


def jaccard(a, b) -> float:
    """Exact Jaccard of two sorted sets of shingle hashes; two empty sets are identical.

    >>> jaccard(np.array([1, 2, 3, 4], np.uint32), np.array([2, 3, 4, 5], np.uint32))
    0.6
    """
    return _jaccard(np.asarray(a, np.uint32), np.asarray(b, np.uint32))
