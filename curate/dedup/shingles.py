"""Normalization and script-aware shingling, vectorized over a whole batch of texts.

Why: near-duplicates differ by full/half-width punctuation, spacing, case and a few edited
characters.  Normalizing first makes those differences vanish; the shingle unit then follows the
script.  Chinese (and Japanese, Korean) has no spaces, so each CJK character is a token and a
shingle is a run of ``n_cjk`` characters; space-separated text (English, code, numbers) is cut
into words and a shingle is a run of ``n_word`` words.  Mixed text is one token stream (汉字 are
one token each, ``python`` is one token), and each document uses the n of its majority script.

Everything here has a plain-Python reference (``tokens``, ``shingles``, ``shingle_hash``) that
the vectorized ``shingle_batch`` must equal bit for bit; ``shingle_hash`` is also the
``hashfunc`` that makes our signatures equal to datasketch's ``MinHash`` (see signatures.py).

    >>> normalize(["Ｈｅｌｌｏ，　World！ 你好，世界。"])
    ['hello, world! 你好,世界。']
    >>> tokens('hello, world! 你好,世界。')
    ['hello', 'world', '你', '好', '世', '界']
    >>> shingles(tokens("你好世界啊"), n_cjk=3, n_word=2)
    [('你', '好', '世'), ('好', '世', '界'), ('世', '界', '啊')]
"""
from __future__ import annotations

import unicodedata

import numpy as np

MASK64 = (1 << 64) - 1
WORD, SEP, CJK = 0, 1, 2
# Code point ranges whose characters are tokens on their own (no spaces between words).
CJK_RANGES = ((0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3040, 0x30FF), (0x3100, 0x31FF), (0x3400, 0x4DBF),
              (0x4E00, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0x20000, 0x3134F))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


# One odd multiplier per position in a shingle (order matters: "ab" != "ba").
WINDOW_MULT = tuple(_splitmix64(k + 1) | 1 for k in range(64))
_WINDOW_MULT_NP = np.array(WINDOW_MULT, dtype=np.uint64)


def mix64(x):
    """splitmix64 finalizer on a uint64 numpy array (wrapping arithmetic is the point)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


JAMO = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xD7B0, 0xD7FF))   # compose into syllables


# Per Basic Multilingual Plane character, filled lazily (a corpus uses a few thousand of 65,536):
# what NFKC then lower case make of it (when that is one character that cannot combine with its
# neighbours; the others are "slow": a text containing one goes through ``unicodedata`` whole),
# and its class (WORD, SEP or CJK).
_FOLD = np.arange(0x10000, dtype=np.uint32)
_SLOW = np.zeros(0x10000, dtype=bool)
_CLASS = np.zeros(0x10000, dtype=np.uint8)
_KNOWN = np.zeros(0x10000, dtype=bool)


def _category_class(i: int) -> int:
    if any(lo <= i <= hi for lo, hi in CJK_RANGES):
        return CJK
    return SEP if i == ord("_") or unicodedata.category(chr(i))[0] in "PSZC" else WORD


def _learn(cps: np.ndarray) -> None:
    """Fill the tables for the BMP code points in ``cps`` not seen before in this process."""
    new = np.unique(cps[~_KNOWN[cps]])
    for i in new.tolist():
        _KNOWN[i] = True
        _CLASS[i] = _category_class(i)
        if 0xD800 <= i <= 0xDFFF:
            continue
        c = chr(i)
        t = unicodedata.normalize("NFKC", c).lower()
        d = unicodedata.normalize("NFD", c)
        if (len(t) != 1 or unicodedata.combining(c) or unicodedata.combining(t) or unicodedata.combining(d[0])
                or any(lo <= i <= hi for lo, hi in JAMO)):
            _SLOW[i] = True
        else:
            _FOLD[i] = ord(t)
            if ord(t) < 0x10000 and not _KNOWN[ord(t)]:
                _learn(np.array([ord(t)]))


def _is_slow(ch: str) -> bool:
    cp = ord(ch)
    if cp < 0x10000:
        _learn(np.array([cp]))
        return bool(_SLOW[cp])
    return unicodedata.normalize("NFKC", ch).lower() != ch


def _fold(ch: str) -> str:
    cp = ord(ch)
    if cp >= 0x10000:
        return ch
    _learn(np.array([cp]))
    return chr(_FOLD[cp])


def normalize_text(text: str) -> str:
    """NFKC (full-width -> half-width, compatibility forms) and lower case, character by
    character through a table (a text with a character that composes with its neighbours goes
    through ``unicodedata.normalize`` whole first).  Punctuation, symbols, whitespace and control
    characters are separators (see ``char_classes``)."""
    text = text or ""
    if any(_is_slow(c) for c in text):
        text = unicodedata.normalize("NFKC", text).lower()
    return "".join(_fold(c) for c in text)


def normalize(texts) -> list[str]:
    return [normalize_text(t) for t in texts]


def _class_of(cp: int) -> int:
    if cp < 0x10000:
        _learn(np.array([cp]))
        return int(_CLASS[cp])
    return _category_class(cp)


def char_classes(cps: np.ndarray) -> np.ndarray:
    """WORD / SEP / CJK for an array of code points (a table lookup; astral ones one by one)."""
    bmp = np.minimum(cps, 0xFFFF)
    _learn(bmp)
    out = _CLASS[bmp]
    astral = cps > 0xFFFF
    if astral.any():
        out = out.copy()
        for cp in np.unique(cps[astral]).tolist():
            out[cps == cp] = _class_of(cp)
    return out


# -- plain-Python reference (small inputs, tests, and datasketch's hashfunc) ------------------

def tokens(normalized: str) -> list[str]:
    """Each CJK character is a token; runs of other non-separator characters are words."""
    out, word = [], []
    for ch in normalized:
        c = _class_of(ord(ch))
        if c != WORD and word:
            out.append("".join(word))
            word = []
        if c == CJK:
            out.append(ch)
        elif c == WORD:
            word.append(ch)
    if word:
        out.append("".join(word))
    return out


def is_cjk_token(tok: str) -> bool:
    return len(tok) == 1 and _class_of(ord(tok)) == CJK


def shingle_size(toks: list[str], n_cjk: int, n_word: int) -> int:
    """The n of the document's majority script (ties go to CJK)."""
    cjk = sum(1 for t in toks if is_cjk_token(t))
    return n_cjk if 2 * cjk >= len(toks) else n_word


def shingles(toks: list[str], n_cjk: int, n_word: int) -> list[tuple[str, ...]]:
    """Token n-grams; a document shorter than n is one shingle of all its tokens."""
    if not toks:
        return []
    n = shingle_size(toks, n_cjk, n_word)
    if len(toks) <= n:
        return [tuple(toks)]
    return [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]


def token_hash(tok: str) -> int:
    """Order-sensitive 64-bit hash of a token: sum of mixed (code point, position) pairs."""
    return sum(_splitmix64(ord(c) + (k << 32)) for k, c in enumerate(tok)) & MASK64


def exact_hash(toks: list[str]) -> int:
    """64-bit hash of the whole token sequence: two texts equal after normalization (up to
    separators) have the same one."""
    return sum(_splitmix64((token_hash(t) + k * 0x9E3779B97F4A7C15) & MASK64) for k, t in enumerate(toks)) & MASK64


def shingle_hash(shingle) -> int:
    """32-bit hash of one shingle (a tuple of tokens).  Pass it as ``hashfunc`` to datasketch's
    MinHash to get exactly the signatures ``signatures.minhash_batch`` computes."""
    acc = sum(token_hash(t) * WINDOW_MULT[k] for k, t in enumerate(shingle)) & MASK64
    return _splitmix64(acc) & 0xFFFFFFFF


# -- vectorized over a batch ------------------------------------------------------------------

def _codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts as one uint32 code point array, plus each text's start offset (len n+1)."""
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    return cps, offsets


def _folded_codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``_codepoints`` of ``normalize_text`` of every text, mostly by table lookups."""
    cps, off = _codepoints(texts)
    bmp = np.minimum(cps, 0xFFFF)
    _learn(bmp)
    slow_char = _SLOW[bmp]
    astral = cps > 0xFFFF
    if astral.any():
        for cp in np.unique(cps[astral]).tolist():
            if _is_slow(chr(cp)):
                slow_char |= cps == cp
    if slow_char.any():
        texts = list(texts)
        for d in np.unique(np.searchsorted(off, np.flatnonzero(slow_char), side="right") - 1).tolist():
            texts[d] = unicodedata.normalize("NFKC", texts[d]).lower()
        cps, off = _codepoints(texts)
        bmp = np.minimum(cps, 0xFFFF)
        _learn(bmp)
    return np.where(cps > 0xFFFF, cps, _FOLD[bmp]), off


def shingle_batch(texts: list[str], n_cjk: int, n_word: int):
    """Shingle hashes of every text, equal to ``shingle_hash`` over
    ``shingles(tokens(normalize_text(t)))``, and each text's ``exact_hash``.  Returns ``(hashes uint32, offsets
    int64 of len(texts)+1, exact uint64)``: text i's shingles are ``hashes[offsets[i]:offsets[i+1]]``
    in text order (not deduplicated)."""
    n_docs = len(texts)
    cps, char_off = _folded_codepoints(texts)
    if cps.size == 0:
        return np.zeros(0, np.uint32), np.zeros(n_docs + 1, np.int64), np.zeros(n_docs, np.uint64)
    cls = char_classes(cps)
    keep = cls != SEP                                  # separators only split words
    doc_start = np.zeros(cps.size + 1, dtype=bool)
    doc_start[char_off[:-1]] = True
    prev_word = np.empty(cps.size, dtype=bool)
    prev_word[0] = False
    prev_word[1:] = cls[:-1] == WORD
    tok_start = (cls == CJK) | ((cls == WORD) & (~prev_word | doc_start[:-1]))
    kept_pos = np.flatnonzero(keep)
    start_k = tok_start[kept_pos]                      # token starts among kept characters
    first_k = np.flatnonzero(start_k)
    tok_of_k = np.cumsum(start_k) - 1
    pos = np.arange(kept_pos.size) - first_k[tok_of_k] if kept_pos.size else np.zeros(0, np.int64)
    char_h = mix64(cps[kept_pos].astype(np.uint64) | (pos.astype(np.uint64) << np.uint64(32)))
    tok_h = np.add.reduceat(char_h, first_k) if first_k.size else np.zeros(0, np.uint64)
    tok_at = kept_pos[first_k]                          # char index of each token's first char
    tok_doc = np.searchsorted(char_off, tok_at, side="right") - 1
    n_tok = np.bincount(tok_doc, minlength=n_docs).astype(np.int64)
    n_cjk_tok = np.bincount(tok_doc, weights=cls[tok_at] == CJK, minlength=n_docs)
    tok_off = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(n_tok, out=tok_off[1:])
    # exact hash: the whole token sequence, position by position
    k_in_doc = (np.arange(tok_h.size) - tok_off[tok_doc]).astype(np.uint64)
    seq = mix64(tok_h + k_in_doc * np.uint64(0x9E3779B97F4A7C15))
    exact = np.zeros(n_docs, dtype=np.uint64)
    has = n_tok > 0
    if has.any():
        exact[has] = np.add.reduceat(seq, tok_off[:-1][has])
    n = np.where(2 * n_cjk_tok >= n_tok, n_cjk, n_word).astype(np.int64)
    hv, win_off = _windows(tok_h, tok_off, n)
    return hv, win_off, exact


def _windows(tok_h: np.ndarray, tok_off: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of n[d] tokens of document d (a document shorter than n is one
    window of all its tokens), and each document's window offsets."""
    n_docs = len(tok_off) - 1
    n_tok = np.diff(tok_off)
    win_len = np.minimum(n, n_tok)
    n_win = np.where(n_tok > 0, n_tok - win_len + 1, 0)
    win_off = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(n_win, out=win_off[1:])
    win_doc = np.repeat(np.arange(n_docs), n_win)
    win_start = tok_off[win_doc] + (np.arange(win_off[-1]) - win_off[win_doc])
    lens = win_len[win_doc]
    padded = np.concatenate((tok_h, np.zeros(int(n.max()) if n.size else 0, np.uint64)))
    acc = padded[win_start] * _WINDOW_MULT_NP[0]
    for k in range(1, int(lens.max()) if lens.size else 0):
        term = padded[win_start + k] * _WINDOW_MULT_NP[k]
        acc += term if (lens > k).all() else np.where(lens > k, term, np.uint64(0))
    return (mix64(acc) & np.uint64(0xFFFFFFFF)).astype(np.uint32), win_off
