"""The compiled inner loops of near-dedup (``_kernels.c``, built by ``pip install``), wrapped:
each wrapper makes the output arrays, the C code fills them with the GIL released, so two
threads use both cores without worker processes.

Each function equals a plain-Python reference, tested bit for bit:

* ``sketch``: ``shingles.tokens`` / ``shingles`` / ``shingle_hash`` / ``exact_hash`` and
  datasketch's ``MinHash(hashfunc=shingle_hash).update_batch`` (scheme ``affine32``);
* ``sorted_sets_into``: ``np.unique`` of each document's shingles;
* ``jaccard``: Python's set operations;
* ``different`` / ``verify_pairs``: the own-part rules stated in verify.py's docstring (tested
  there on real and synthetic pairs).
"""
from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np

from . import _kernels


def _check_build() -> None:
    """An editable install runs the C file as it was at ``pip install``: if it has changed since
    (a pull, an edit), stop rather than run old loops against new Python."""
    source = Path(__file__).with_name("_kernels.c")
    if source.exists() and hashlib.sha256(source.read_bytes()).hexdigest()[:16] != _kernels.SOURCE_DIGEST:
        raise ImportError(f"{source} changed since it was compiled: rebuild with `make install` "
                          "(or `pip install -e .`)")


_check_build()

WORD, SEP, CJK = 0, 1, 2          # character classes (the C code has the same)
SLOW, ASTRAL = 2, 4               # scan's flags per document
_EMPTY = np.uint32(0xFFFFFFFF)

# inputs as the C code reads them (no copy when they already are); outputs are made here
_u8, _u32 = partial(np.ascontiguousarray, dtype=np.uint8), partial(np.ascontiguousarray, dtype=np.uint32)
_u64, _i64 = partial(np.ascontiguousarray, dtype=np.uint64), partial(np.ascontiguousarray, dtype=np.int64)


def utf8_decode(data: np.ndarray, byte_off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texts given as valid UTF-8 (text d = ``data[byte_off[d]:byte_off[d+1]]``, as polars holds
    them) -> one uint32 code point array and each text's start in it (len texts + 1)."""
    cps = np.empty(len(data), np.uint32)           # at most one code point per byte
    off = np.zeros(len(byte_off), np.int64)
    k = _kernels.utf8_decode(_u8(data), _i64(byte_off), cps, off)
    return cps[:k], off


def heads(cps_a, off_a, cps_b, off_b, use_b, chars: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``chars`` code points of each document, from text set A, or B where ``use_b``:
    (code points, offsets)."""
    use_b = _u8(use_b)
    n = np.where(use_b, np.diff(off_b), np.diff(off_a))
    out_off = np.zeros(len(use_b) + 1, np.int64)
    np.cumsum(np.minimum(n, chars), out=out_off[1:])
    out = np.empty(out_off[-1], np.uint32)
    _kernels.heads(_u32(cps_a), _i64(off_a), _u32(cps_b), _i64(off_b), use_b, out, out_off)
    return out, out_off


def scan(cps, char_off, slow) -> np.ndarray:
    """Per document: does it hold a BMP character the tables cannot fold alone (SLOW: ``slow``
    is 1 there), an astral one (ASTRAL)?"""
    flags = np.zeros(len(char_off) - 1, np.uint8)
    _kernels.scan(_u32(cps), _i64(char_off), _u8(slow), flags)
    return flags


def sketch(cps, char_off, fold, klass, astral_cp, astral_cls, n_cjk: int, n_word: int, wmult, perm_a, perm_b):
    """Per document of a batch (document d = ``cps[char_off[d]:char_off[d+1]]``): fold each
    character (``fold``: NFKC + lower case of a BMP character), class it (``klass``; astral ones
    from the sorted ``astral_cp``/``astral_cls``), cut tokens, then the whole-text hash, the
    shingle hashes in text order and the MinHash signature.  Returns ``(hashes uint32, offsets
    int64, exact uint64, signatures uint32 n_docs x num_perm, shingle size uint8, sentence ends:
    uint8 per token (1 after a token that a sentence-final mark follows) and token offsets)``."""
    cps = _u32(cps)
    n_docs = len(char_off) - 1
    hv, cut = np.empty(len(cps), np.uint32), np.zeros(len(cps), np.uint8)   # upper bounds
    off, tok_off = np.zeros(n_docs + 1, np.int64), np.zeros(n_docs + 1, np.int64)
    exact, sizes = np.zeros(n_docs, np.uint64), np.zeros(n_docs, np.uint8)
    sig = np.full((n_docs, len(perm_a)), _EMPTY, np.uint32)
    n_shingles, n_tokens = _kernels.sketch(cps, _i64(char_off), _u32(fold), _u8(klass), _u32(astral_cp),
                                           _u8(astral_cls), int(n_cjk), int(n_word), _u64(wmult),
                                           _u32(perm_a), _u32(perm_b), hv, off, exact, sig, sizes, cut, tok_off)
    # copies, so the spill does not hold the upper-bound buffers
    return hv[:n_shingles].copy(), off, exact, sig, sizes, cut[:n_tokens].copy(), tok_off


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Per document and band: a 64-bit hash of the band's rows in every field's signature
    (``sigs``: fields x documents x num_perm), mixed row by row: key = mix64(key * GOLD + v + f + 1)."""
    sigs = _u32(sigs)
    n_fields, n_docs, n_perm = sigs.shape
    keys = np.zeros((n_docs, bands), np.uint64)
    _kernels.band_keys(sigs, n_fields, n_docs, n_perm, int(bands), int(rows), keys)
    return keys


def sorted_sets_into(hv, off, docs, start, vals, vals_end, rank) -> None:
    """The shingle hashes of documents ``docs`` (document d = ``hv[off[d]:off[d+1]]``, in text
    order) as sorted sets, for exact Jaccard, and each shingle's rank: the index of its value in
    its document's set (so a check over the shingles in text order needs no search).  Written
    into arrays the caller made (threads fill disjoint parts): the i-th of ``docs`` gets its
    ranks at ``rank[start[i]:start[i] + its length]`` and its set at
    ``vals[start[i]:vals_end[i]]``."""
    _kernels.sorted_sets_into(_u32(hv), _i64(off), _i64(docs), _i64(start), vals, vals_end, rank)


def gather_ragged(values, off, rows, out, out_start) -> None:
    """Copy ``values[off[r]:off[r+1]]`` (bytes) of each of ``rows`` to ``out[out_start[i]:]``."""
    _kernels.gather_ragged(_u8(values), _i64(off), _i64(rows), out, _i64(out_start))


def sorted_sets(hv, off):
    """``sorted_sets_into`` for every document, the sets packed: ``(values, value offsets,
    ranks)`` (ranks in ``hv``'s order)."""
    start = (off - off[0]).astype(np.int64)
    vals, rank = np.empty(start[-1], np.uint32), np.empty(start[-1], np.uint32)
    vals_end = np.zeros(len(off) - 1, np.int64)
    sorted_sets_into(hv, off, np.arange(len(off) - 1), start[:-1], vals, vals_end, rank)
    keep = np.concatenate([np.arange(s, e) for s, e in zip(start[:-1], vals_end)] or [np.zeros(0, np.int64)])
    return vals[keep], np.concatenate(([0], np.cumsum(vals_end - start[:-1]))), rank


def jaccard(a, b) -> float:
    """Exact Jaccard of two sorted sets of shingle hashes; two empty sets are identical.

    >>> jaccard(np.array([1, 2, 3, 4], np.uint32), np.array([2, 3, 4, 5], np.uint32))
    0.6
    """
    return _kernels.jaccard(_u32(a), _u32(b))


def different(set_a, rank_a, cut_a, n_a, set_b, rank_b, cut_b, n_b, rule) -> bool:
    """The own-part check of verify.py's docstring for one field of a pair: each text as its
    sorted set of shingle hashes, the rank in that set of each shingle in text order, its
    sentence ends per token and its shingle size; ``rule`` from verify.own_rule."""
    return _kernels.different(_u32(set_a), _u32(rank_a), _u8(cut_a), int(n_a), _u32(set_b), _u32(rank_b),
                              _u8(cut_b), int(n_b), _i64(rule))


def verify_pairs(vals, vals_end, rank, start, n, cut, cut_start, local, n_docs, fields_of, ga, gb, threshold, rule):
    """Pairs p = documents ga[p] ~ gb[p]; field f of document g is entry ``e = f * n_docs + g``,
    at slot ``i = local[e]`` of the compact arrays (verify.Spill._gather): set
    ``vals[start[i]:vals_end[i]]``, ranks ``rank[start[i]:start[i+1]]``, sentence ends
    ``cut[cut_start[i]:cut_start[i+1]]``, shingle size ``n[i]``.  Returns the min over
    the pair's ``fields_of[p]`` fields of the exact Jaccard (stopping below ``threshold``), and
    for pairs that reach it whether the own-part check (``different``) finds them different in
    some field."""
    sims, split = np.empty(len(ga), np.float32), np.zeros(len(ga), np.bool_)
    _kernels.verify(vals, vals_end, rank, start, n, cut, cut_start, local, int(n_docs), _i64(fields_of), _i64(ga),
                    _i64(gb), float(threshold), _i64(rule), sims, split)
    return sims, split
