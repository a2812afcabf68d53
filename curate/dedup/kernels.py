"""The compiled inner loops of near-dedup (numba; compiled once, cached on disk).

Why compiled: per document the work is a few hundred shingles times 128 permutations, then per
candidate pair a merge of two sorted sets.  In numpy each of those steps is a full pass over
memory with a temporary array (and a Python call per pair in verification); fused into one loop
per document or pair it runs 5-20x faster, and ``nogil`` lets two threads use both cores
without worker processes.

Each function equals a plain-Python reference, tested bit for bit:

* ``sketch``: ``shingles.tokens`` / ``shingles`` / ``shingle_hash`` / ``exact_hash`` and
  datasketch's ``MinHash(hashfunc=shingle_hash).update_batch`` (scheme ``affine32``);
* ``sorted_sets_into``: ``np.unique`` of each document's shingles;
* ``intersection`` / ``jaccard``: Python's set operations.

The verification kernels (own parts of a text) are in verify.py.
"""
from __future__ import annotations

import numba as nb
import numpy as np

WORD, SEP, CJK = 0, 1, 2
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint32(0xFFFFFFFF)

_jit = nb.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def mix64(x):
    """splitmix64 finalizer (same as shingles.mix64 on one value)."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


@_jit
def fmix32(h):
    """MurmurHash3's 32-bit finalizer: datasketch's pre-mix of an input hash (``_fmix(hv, 32)``)."""
    h = h ^ (h >> np.uint32(16))
    h = np.uint32(h * np.uint32(0x85EBCA6B))
    h = h ^ (h >> np.uint32(13))
    h = np.uint32(h * np.uint32(0xC2B2AE35))
    return h ^ (h >> np.uint32(16))


@_jit
def utf8_decode(data, byte_off):
    """Texts given as valid UTF-8 (text d = ``data[byte_off[d]:byte_off[d+1]]``, as polars holds
    them) -> one uint32 code point array and each text's start in it (len texts + 1)."""
    n_docs = len(byte_off) - 1
    cps = np.empty(len(data), np.uint32)           # at most one code point per byte
    off = np.zeros(n_docs + 1, np.int64)
    k = 0
    for d in range(n_docs):
        i, end = byte_off[d], byte_off[d + 1]
        while i < end:
            b = np.uint32(data[i])
            if b < 0x80:
                cp, i = b, i + 1
            elif b < 0xE0:
                cp, i = ((b & np.uint32(0x1F)) << np.uint32(6)) | (np.uint32(data[i + 1]) & np.uint32(0x3F)), i + 2
            elif b < 0xF0:
                cp = ((b & np.uint32(0x0F)) << np.uint32(12)) | ((np.uint32(data[i + 1]) & np.uint32(0x3F)) << np.uint32(6)) \
                    | (np.uint32(data[i + 2]) & np.uint32(0x3F))
                i += 3
            else:
                cp = ((b & np.uint32(0x07)) << np.uint32(18)) | ((np.uint32(data[i + 1]) & np.uint32(0x3F)) << np.uint32(12)) \
                    | ((np.uint32(data[i + 2]) & np.uint32(0x3F)) << np.uint32(6)) | (np.uint32(data[i + 3]) & np.uint32(0x3F))
                i += 4
            cps[k] = cp
            k += 1
        off[d + 1] = k
    return cps[:k], off


@_jit
def heads(cps_a, off_a, cps_b, off_b, use_b, chars):
    """The first ``chars`` code points of each document, from text set A, or B where ``use_b``:
    (code points, offsets)."""
    n_docs = len(use_b)
    out_off = np.zeros(n_docs + 1, np.int64)
    for d in range(n_docs):
        n = off_b[d + 1] - off_b[d] if use_b[d] else off_a[d + 1] - off_a[d]
        out_off[d + 1] = out_off[d] + min(n, chars)
    out = np.empty(out_off[n_docs], np.uint32)
    for d in range(n_docs):
        for k in range(out_off[d + 1] - out_off[d]):
            out[out_off[d] + k] = cps_b[off_b[d] + k] if use_b[d] else cps_a[off_a[d] + k]
    return out, out_off


SLOW, ASTRAL = 2, 4     # scan's flags per document


@_jit
def scan(cps, char_off, slow):
    """Per document: does it hold a BMP character the tables cannot fold alone (SLOW: ``slow``
    is 1 there), an astral one (ASTRAL)?"""
    n_docs = len(char_off) - 1
    flags = np.zeros(n_docs, np.uint8)
    for d in range(n_docs):
        f = 0
        for i in range(char_off[d], char_off[d + 1]):
            cp = cps[i]
            if cp > 0xFFFF:
                f |= ASTRAL
            elif slow[cp]:
                f |= SLOW
        flags[d] = f
    return flags


@_jit
def _ends_sentence(cp):
    # 。！？；… and their ASCII forms (NFKC has folded full-width ones), and line breaks
    return cp == 0x3002 or cp == 0x21 or cp == 0x3F or cp == 0x3B or cp == 0x2E or cp == 0x2026 or cp == 0x0A


@_jit
def _char_class(cp, klass, astral_cp, astral_cls):
    if cp <= 0xFFFF:
        return klass[cp]
    i = np.searchsorted(astral_cp, cp)
    return astral_cls[i] if i < len(astral_cp) and astral_cp[i] == cp else np.uint8(WORD)


@_jit
def sketch(cps, char_off, fold, klass, astral_cp, astral_cls, n_cjk, n_word, wmult, perm_a, perm_b):
    """Per document of a batch (document d = ``cps[char_off[d]:char_off[d+1]]``): fold each
    character (``fold``: NFKC + lower case of a BMP character), class it (``klass``; astral ones
    from the sorted ``astral_cp``/``astral_cls``), cut tokens, then the whole-text hash, the
    shingle hashes in text order and the MinHash signature.  Returns ``(hashes uint32, offsets
    int64, exact uint64, signatures uint32 n_docs x num_perm, shingle size uint8, sentence ends:
    uint8 per token (1 after a token that a sentence-final mark follows) and token offsets)``."""
    n_docs = len(char_off) - 1
    n_perm = len(perm_a)
    sizes = np.zeros(n_docs, np.uint8)
    cut = np.zeros(len(cps), np.uint8)
    tok_off = np.zeros(n_docs + 1, np.int64)
    hv = np.empty(len(cps), np.uint32)           # a document has at most as many shingles as characters
    off = np.zeros(n_docs + 1, np.int64)
    exact = np.zeros(n_docs, np.uint64)
    sig = np.full((n_docs, n_perm), _EMPTY, np.uint32)
    longest = 0
    for d in range(n_docs):
        longest = max(longest, char_off[d + 1] - char_off[d])
    tok = np.empty(longest + 1, np.uint64)
    pos = 0
    for d in range(n_docs):
        n_tok, n_cjk_tok, in_word, k = 0, 0, False, 0
        for i in range(char_off[d], char_off[d + 1]):
            cp = cps[i]
            if cp <= 0xFFFF:
                cp = fold[cp]
            c = _char_class(cp, klass, astral_cp, astral_cls)
            if c == SEP:
                in_word = False
                if n_tok > 0 and _ends_sentence(cp):
                    cut[tok_off[d] + n_tok - 1] = 1
                continue
            if c == CJK or not in_word:          # a CJK character, or the first letter of a word
                tok[n_tok] = 0
                n_tok += 1
                k = 0
                if c == CJK:
                    n_cjk_tok += 1
            in_word = c == WORD
            tok[n_tok - 1] += mix64(np.uint64(cp) | (np.uint64(k) << np.uint64(32)))
            k += 1
        tok_off[d + 1] = tok_off[d] + n_tok
        if n_tok > 0:
            cut[tok_off[d] + n_tok - 1] = 1           # the text's end ends its last sentence
        ex = np.uint64(0)
        for t in range(n_tok):
            ex += mix64(tok[t] + np.uint64(t) * _GOLD)
        exact[d] = ex
        n = n_cjk if 2 * n_cjk_tok >= n_tok else n_word
        sizes[d] = n
        width = min(n, n_tok)
        n_win = n_tok - width + 1 if n_tok > 0 else 0
        row = sig[d]
        for w in range(n_win):
            acc = np.uint64(0)
            for j in range(width):
                acc += tok[w + j] * wmult[j]
            h = np.uint32(mix64(acc) & _LOW32)
            hv[pos + w] = h
            x = fmix32(h)
            for p in range(n_perm):                 # datasketch affine32: a * x + b mod 2^32, min
                row[p] = min(row[p], np.uint32(perm_a[p] * x + perm_b[p]))
        pos += n_win
        off[d + 1] = pos
    return hv[:pos].copy(), off, exact, sig, sizes, cut[:tok_off[n_docs]].copy(), tok_off


@_jit
def band_keys(sigs, bands, rows):
    """Per document and band: a 64-bit hash of the band's rows in every field's signature
    (``sigs``: fields x documents x num_perm), mixed row by row: key = mix64(key * GOLD + v + f + 1)."""
    n_fields, n_docs = sigs.shape[0], sigs.shape[1]
    keys = np.zeros((n_docs, bands), np.uint64)
    for d in range(n_docs):
        for band in range(bands):
            key = np.uint64(0)
            for f in range(n_fields):
                for k in range(rows):
                    key = mix64(key * _GOLD + np.uint64(sigs[f, d, band * rows + k]) + np.uint64(f + 1))
            keys[d, band] = key
    return keys


@_jit
def _sort_with_positions(keys, pos, keys_tmp, pos_tmp, m):
    """Sort ``keys[:m]`` ascending, carrying ``pos``: insertion sort for a few, else an LSD radix
    sort on bytes (no comparisons to mispredict: 2-2.5x numba's quicksort on shingle sets).
    Returns the arrays that hold the result."""
    if m <= 32:
        for k in range(1, m):
            x, p = keys[k], pos[k]
            j = k - 1
            while j >= 0 and keys[j] > x:
                keys[j + 1], pos[j + 1] = keys[j], pos[j]
                j -= 1
            keys[j + 1], pos[j + 1] = x, p
        return keys, pos
    count = np.empty(256, np.int64)
    for shift in range(0, 32, 8):
        count[:] = 0
        for k in range(m):
            count[(keys[k] >> shift) & 255] += 1
        total = 0
        for c in range(256):
            total, count[c] = total + count[c], total
        for k in range(m):
            digit = (keys[k] >> shift) & 255
            j = count[digit]
            count[digit] = j + 1
            keys_tmp[j], pos_tmp[j] = keys[k], pos[k]
        keys, pos, keys_tmp, pos_tmp = keys_tmp, pos_tmp, keys, pos
    return keys, pos


@_jit
def sorted_sets_into(hv, off, docs, start, vals, vals_end, rank):
    """The shingle hashes of documents ``docs`` (document d = ``hv[off[d]:off[d+1]]``, in text
    order) as sorted sets, for exact Jaccard, and each shingle's rank: the index of its value in
    its document's set (so a check over the shingles in text order needs no search).  Written
    into arrays the caller made (threads fill disjoint parts): the i-th of ``docs`` gets its
    ranks at ``rank[start[i]:start[i] + its length]`` and its set at
    ``vals[start[i]:vals_end[i]]``."""
    longest = 0
    for i in range(len(docs)):
        longest = max(longest, off[docs[i] + 1] - off[docs[i]])
    keys, pos = np.empty(longest, np.uint32), np.empty(longest, np.uint32)
    keys_tmp, pos_tmp = np.empty(longest, np.uint32), np.empty(longest, np.uint32)
    for i in range(len(docs)):
        lo, m, at = off[docs[i]], off[docs[i] + 1] - off[docs[i]], start[i]
        for k in range(m):
            keys[k], pos[k] = hv[lo + k], k
        srt, where = _sort_with_positions(keys, pos, keys_tmp, pos_tmp, m)
        u = -1
        for k in range(m):
            if k == 0 or srt[k] != srt[k - 1]:
                u += 1
                vals[start[i] + u] = srt[k]
            rank[start[i] + where[k]] = u
        vals_end[i] = start[i] + u + 1


@_jit
def gather_ragged(values, off, rows, out, out_start):
    """Copy ``values[off[r]:off[r+1]]`` of each of ``rows`` to ``out[out_start[i]:]``."""
    for i in range(len(rows)):
        lo, m = off[rows[i]], off[rows[i] + 1] - off[rows[i]]
        for k in range(m):
            out[out_start[i] + k] = values[lo + k]


def sorted_sets(hv, off):
    """``sorted_sets_into`` for every document, the sets packed: ``(values, value offsets,
    ranks)`` (ranks in ``hv``'s order)."""
    start = (off - off[0]).astype(np.int64)
    vals, rank = np.empty(start[-1], np.uint32), np.empty(start[-1], np.uint32)
    vals_end = np.zeros(len(off) - 1, np.int64)
    sorted_sets_into(hv, off, np.arange(len(off) - 1), start[:-1], vals, vals_end, rank)
    keep = np.concatenate([np.arange(s, e) for s, e in zip(start[:-1], vals_end)] or [np.zeros(0, np.int64)])
    return vals[keep], np.concatenate(([0], np.cumsum(vals_end - start[:-1]))), rank


@_jit
def intersection(a, b):
    """Size of the intersection of two sorted sets (a merge walk)."""
    i, j, inter = 0, 0, 0
    while i < len(a) and j < len(b):
        if a[i] < b[j]:
            i += 1
        elif a[i] > b[j]:
            j += 1
        else:
            inter += 1
            i += 1
            j += 1
    return inter


@_jit
def jaccard(a, b):
    if len(a) == 0 or len(b) == 0:
        return 1.0 if len(a) == len(b) else 0.0
    inter = intersection(a, b)
    return inter / (len(a) + len(b) - inter)
