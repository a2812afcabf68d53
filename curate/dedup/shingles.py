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

import os
import tempfile
import threading
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl

from . import kernels

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


# Per Basic Multilingual Plane character: what NFKC then lower case make of it (when that is one
# character that cannot combine with its neighbours; the others are "slow": a text containing one
# goes through ``unicodedata`` whole), and its class (WORD, SEP or CJK).  Built for all 65,536 at
# first use (0.2 s) and cached on disk per Unicode version, so a run pays a file read, not the
# build, and the sketching threads never wait on one another to learn a character.
_FOLD: np.ndarray          # uint32: folded code point
_CLASS: np.ndarray         # uint8: WORD / SEP / CJK
_SLOW: np.ndarray          # uint8 for kernels.scan: 1 where the tables cannot fold the character alone
_TABLES_LOCK = threading.Lock()


def _category_class(i: int) -> int:
    if any(lo <= i <= hi for lo, hi in CJK_RANGES):
        return CJK
    return SEP if i == ord("_") or unicodedata.category(chr(i))[0] in "PSZC" else WORD


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fold = np.arange(0x10000, dtype=np.uint32)
    klass = np.array([_category_class(i) for i in range(0x10000)], dtype=np.uint8)
    slow = np.zeros(0x10000, dtype=np.uint8)
    for i in range(0x10000):
        if 0xD800 <= i <= 0xDFFF:
            continue
        c = chr(i)
        t = unicodedata.normalize("NFKC", c).lower()
        d = unicodedata.normalize("NFD", c)
        if (len(t) != 1 or unicodedata.combining(c) or unicodedata.combining(t) or unicodedata.combining(d[0])
                or any(lo <= i <= hi for lo, hi in JAMO)):
            slow[i] = 1
        else:
            fold[i] = ord(t)
    return fold, klass, slow


def _tables_path() -> Path:
    name = f"unicode-tables-{unicodedata.unidata_version}-v1.npy"
    here = Path(__file__).resolve().parent / "__pycache__"
    return here / name if os.access(here if here.exists() else here.parent, os.W_OK) \
        else Path(tempfile.gettempdir()) / f"sftkit-{name}"


def _load_tables() -> None:
    global _FOLD, _CLASS, _SLOW
    with _TABLES_LOCK:
        if "_FOLD" in globals():
            return
        path = _tables_path()
        try:
            packed = np.load(path)
        except (OSError, ValueError):
            packed = np.stack(_build_tables()).astype(np.uint32)
            try:                                     # temp name, then rename: never a torn file
                path.parent.mkdir(exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, packed)
                os.replace(tmp, path)
            except OSError:
                pass                                 # a read-only install: build per process
        _FOLD, _CLASS, _SLOW = packed[0].copy(), packed[1].astype(np.uint8), packed[2].astype(np.uint8)


def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fold, class, slow)`` per BMP code point."""
    if "_FOLD" not in globals():
        _load_tables()
    return _FOLD, _CLASS, _SLOW


def _is_slow(ch: str) -> bool:
    cp = ord(ch)
    if cp < 0x10000:
        return bool(tables()[2][cp])
    return unicodedata.normalize("NFKC", ch).lower() != ch


def _fold(ch: str) -> str:
    cp = ord(ch)
    return ch if cp >= 0x10000 else chr(tables()[0][cp])


def normalize_text(text: str) -> str:
    """NFKC (full-width -> half-width, compatibility forms) and lower case, character by
    character through a table (a text with a character that composes with its neighbours goes
    through ``unicodedata.normalize`` whole first).  Punctuation, symbols, whitespace and control
    characters are separators (class SEP)."""
    text = text or ""
    if any(_is_slow(c) for c in text):
        text = unicodedata.normalize("NFKC", text).lower()
    return "".join(_fold(c) for c in text)


def normalize(texts) -> list[str]:
    return [normalize_text(t) for t in texts]


def _class_of(cp: int) -> int:
    return int(tables()[1][cp]) if cp < 0x10000 else _category_class(cp)


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


# -- compiled, over a whole batch -------------------------------------------------------------



def codepoints(texts) -> tuple[np.ndarray, np.ndarray]:
    """All texts (a list of str, or a polars String Series: read from its UTF-8 in compiled code,
    no Python string per text) as one uint32 code point array, plus each text's start (len n+1)."""
    if isinstance(texts, pl.Series):
        texts = texts.fill_null("")
        byte_off = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(texts.str.len_bytes().to_numpy(), out=byte_off[1:])
        data = texts.str.join("").cast(pl.Binary).item() if len(texts) else b""
        return kernels.utf8_decode(np.frombuffer(data, np.uint8), byte_off)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.array(list(map(len, texts)), dtype=np.int64), out=offsets[1:])
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    return cps, offsets


def prepared_codepoints(texts, raw: tuple[np.ndarray, np.ndarray] | None = None):
    """Code points of every text, ready for the fold-and-classify table lookups in
    ``kernels.sketch``: a text with a character the tables cannot fold on its own (one that
    composes with its neighbours, or an astral one that NFKC changes) has gone through
    ``unicodedata.normalize`` whole first.  Returns ``(cps, offsets, astral)``: ``astral`` the
    sorted astral code points present, with their classes in the high bits' place as a second
    row (``astral[1]``).  ``raw``: ``codepoints(texts)`` if the caller has them already."""
    cps, off = raw if raw is not None else codepoints(texts)
    flags = kernels.scan(cps, off, tables()[2])
    astral_docs = np.flatnonzero(flags & kernels.ASTRAL).tolist()
    slow = set(np.flatnonzero(flags & kernels.SLOW).tolist())
    slow |= {d for d in astral_docs if any(ord(c) > 0xFFFF and _is_slow(c) for c in texts[d])}
    if slow:
        cps, off = _renormalized(texts, cps, off, sorted(slow))
    astral = np.zeros((2, 0), np.uint32)
    if astral_docs:
        big = np.unique(cps[cps > 0xFFFF])
        astral = np.stack((big, np.array([_category_class(int(c)) for c in big], np.uint32)))
    return cps, off, astral


def _renormalized(texts, cps, off, docs):
    """``cps``/``off`` with documents ``docs`` replaced by their NFKC + lower-case text."""
    pieces, lens, at = [], np.diff(off), 0
    for d in docs:
        new = np.frombuffer(unicodedata.normalize("NFKC", texts[d]).lower().encode("utf-32-le"), dtype=np.uint32)
        pieces += [cps[off[at]:off[d]], new]
        lens[d] = len(new)
        at = d + 1
    pieces.append(cps[off[at]:])
    new_off = np.zeros_like(off)
    np.cumsum(lens, out=new_off[1:])
    return np.concatenate(pieces), new_off


def sketch_texts(texts, n_cjk: int, n_word: int, perms: tuple[np.ndarray, np.ndarray], raw=None):
    """Shingle hashes, whole-text hashes and MinHash signatures of a batch of texts, equal to
    ``shingle_hash`` over ``shingles(tokens(normalize_text(t)))``, ``exact_hash`` and datasketch's
    MinHash.  Returns ``(hashes uint32, offsets int64 of len(texts)+1, exact uint64, signatures
    uint32 of len(texts) x num_perm, shingle size uint8)``: text i's shingles are
    ``hashes[offsets[i]:offsets[i+1]]`` in text order (not deduplicated), each ``size[i]`` tokens
    long (the n of its majority script).  ``texts``: a list of str or a polars String Series."""
    cps, off, astral = prepared_codepoints(texts, raw)
    fold, klass, _ = tables()
    return kernels.sketch(cps, off, fold, klass, astral[0], astral[1].astype(np.uint8), n_cjk, n_word,
                          _WINDOW_MULT_NP, perms[0], perms[1])


def shingle_batch(texts: list[str], n_cjk: int, n_word: int):
    """``sketch_texts`` without signatures: ``(hashes, offsets, exact)``."""
    hv, off, exact, *_ = sketch_texts(texts, n_cjk, n_word, (np.zeros(0, np.uint32), np.zeros(0, np.uint32)))
    return hv, off, exact
