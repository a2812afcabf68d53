"""Tokenizers for the text metrics, right for Chinese.

* ``CjkTokenizer`` (ROUGE's default here): every CJK character is a token, every run of ASCII
  letters and digits is one lower-cased token, every other non-space character is a token.
  rouge-score's own default keeps only ``[a-z0-9]``: Chinese scores 0 and "模型 GPT4 很强" vs
  "模型 GPT4 很弱" scores 1.0.  ``JiebaTokenizer`` gives jieba words instead (optional package).
* ``sacrebleu_tokenizer(name)``: the sacrebleu tokenizer BLEU uses.  For ``zh`` and ``13a`` it is
  a str.translate-based twin of sacrebleu's own (whose regex replacement costs ~0.8 ms per
  276-character Chinese line); tests check the twin against sacrebleu on every code point and on
  real text.  Any other name is sacrebleu's tokenizer itself.

    >>> CjkTokenizer().tokenize("模型 GPT4 很强!")
    ['模', '型', 'gpt4', '很', '强', '!']
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_CJK_TOKEN = re.compile(r"[A-Za-z0-9]+|\S")


class CjkTokenizer:
    """rouge-score ``tokenizer=``: CJK characters, lower-cased ASCII alnum runs, other characters."""

    name = "cjk"

    def tokenize(self, text: str) -> list[str]:
        return _CJK_TOKEN.findall(text.translate(_ASCII_LOWER))

    def ids_batch(self, texts: list[str], vocab: dict) -> list[np.ndarray]:
        """The same tokens as ``tokenize``, as ids, for many texts at once: a single character is
        its code point, a longer token 0x110000 + its number in ``vocab``."""
        if not texts:
            return []
        joined = "".join(texts)
        cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
        cps = np.where((cps >= 65) & (cps <= 90), cps + 32, cps)     # ASCII lower case only
        lens = np.array([len(t) for t in texts], dtype=np.int64)
        first = np.zeros(len(cps), dtype=bool)
        first[np.cumsum(lens)[:-1][lens[1:] > 0] if len(lens) > 1 else []] = True
        if len(cps):
            first[0] = True
        alnum = ((cps >= 48) & (cps <= 57)) | ((cps >= 97) & (cps <= 122))
        space = _whitespace()[cps]
        prev_alnum = np.zeros(len(cps), dtype=bool)
        prev_alnum[1:] = alnum[:-1]
        prev_alnum &= ~first
        start = (~space & ~alnum) | (alnum & ~prev_alnum)
        starts = np.flatnonzero(start)
        ids = cps[starts].astype(np.int64)
        # token ends: an alnum run ends where the next character is not alnum (or a text ends)
        nxt_alnum = np.zeros(len(cps), dtype=bool)
        nxt_alnum[:-1] = alnum[1:] & ~first[1:]
        run_end = np.flatnonzero(alnum & ~nxt_alnum)
        multi = np.flatnonzero(alnum[starts])
        if len(multi):
            ends = run_end[np.searchsorted(run_end, starts[multi])]
            long = ends > starts[multi]
            for k, s, e in zip(multi[long].tolist(), starts[multi][long].tolist(), ends[long].tolist()):
                ids[k] = 0x110000 + vocab.setdefault(joined[s:e + 1].lower(), len(vocab))   # ASCII run
        return _split_by_text(ids, start, np.cumsum(lens))


class JiebaTokenizer:
    """rouge-score ``tokenizer=``: jieba words (lower-cased), whitespace dropped.  Needs ``jieba``."""

    name = "jieba"

    def __init__(self):
        try:
            import jieba
        except ImportError as e:
            raise ImportError("the jieba tokenizer needs the jieba package: pip install 'sftkit[zh]'") from e
        jieba.setLogLevel(60)
        self._cut = jieba.lcut

    def tokenize(self, text: str) -> list[str]:
        return [w for w in self._cut(text.translate(_ASCII_LOWER)) if w.strip()]


@lru_cache(maxsize=None)
def _whitespace() -> np.ndarray:
    """Bool per code point: str.isspace (what rouge-score's tokenizer and str.split drop)."""
    table = np.zeros(0x110000, dtype=bool)
    every = "".join(map(chr, range(0x3001)))   # no whitespace above U+3000
    table[[m.start() for m in re.finditer(r"\s", every)]] = True   # re's \s is str.isspace
    return table


def whitespace_token_ids(texts: list[str], vocab: dict) -> list[np.ndarray]:
    """``text.split()`` for many texts at once, as ids: a one-character token is its code point,
    a longer one 0x110000 + its number in ``vocab`` (only those go through Python)."""
    if not texts:
        return []
    joined = "".join(texts)
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    ends_of_text = np.cumsum([len(t) for t in texts])
    space = _whitespace()[cps]
    boundary = np.zeros(len(cps) + 1, dtype=bool)          # a token cannot cross a text boundary
    boundary[ends_of_text] = True
    prev_space = np.ones(len(cps), dtype=bool)
    prev_space[1:] = space[:-1] | boundary[1:-1]
    next_space = np.ones(len(cps), dtype=bool)
    next_space[:-1] = space[1:] | boundary[1:-1]
    is_start = ~space & prev_space
    starts = np.flatnonzero(is_start)
    ends = np.flatnonzero(~space & next_space)              # inclusive, paired with starts
    ids = cps[starts].astype(np.int64)
    for k in np.flatnonzero(ends > starts).tolist():
        ids[k] = 0x110000 + vocab.setdefault(joined[starts[k]:ends[k] + 1], len(vocab))
    return _split_by_text(ids, is_start, ends_of_text)


def _split_by_text(ids: np.ndarray, is_start: np.ndarray, ends_of_text: np.ndarray) -> list[np.ndarray]:
    """Cut the token ids of all texts back into one array per text (by tokens started before each end)."""
    before = np.concatenate([[0], np.cumsum(is_start, dtype=np.int32)])[ends_of_text]
    return np.split(ids, before[:-1])


def rouge_tokenizer(name: str):
    if name == "cjk":
        return CjkTokenizer()
    if name == "jieba":
        return JiebaTokenizer()
    raise ValueError(f"unknown ROUGE tokenizer {name!r} (use cjk or jieba)")


# -- language --------------------------------------------------------------------------------

_CJK_CLASS = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff"
_CJK_RX = re.compile(f"[{_CJK_CLASS}]")


def is_cjk_char(ch: str) -> bool:
    """Han, kana, Hangul and CJK punctuation/compatibility blocks."""
    return bool(_CJK_RX.match(ch))


def cjk_share(texts) -> float:
    """Fraction of non-space characters that are CJK, over all ``texts``."""
    cjk = total = 0
    for t in texts:
        cjk += len(_CJK_RX.findall(t))
        total += len("".join(t.split()))
    return cjk / total if total else 0.0


def default_bleu_tokenizer(references) -> str:
    """``zh`` when at least 10% of the reference characters are CJK, else ``13a`` (sacrebleu's);
    the first 1,000 references decide."""
    from itertools import islice
    return "zh" if cjk_share(islice(references, 1000)) >= 0.10 else "13a"


# -- sacrebleu tokenizers, fast ----------------------------------------------------------------

@lru_cache(maxsize=None)
def _spaced(zh: bool) -> np.ndarray:
    """Bool per code point: does the tokenizer put spaces around this character?

    The CJK part comes from sacrebleu's own range table with its own comparison (``start <= ch <=
    end`` on strings), so quirks such as the 2-character bounds '\\u20000' are reproduced exactly.
    The rest is TokenizerRegexp's first rule, r'([\\{-\\~\\[-\\` -\\&\\(-\\+\\:-\\@\\/])' -> r' \\1 ', a
    per-character replacement.
    """
    table = np.zeros(0x110000, dtype=bool)
    for c in [*range(0x7B, 0x7F), *range(0x5B, 0x61), *range(0x20, 0x27), *range(0x28, 0x2C), *range(0x3A, 0x41), 0x2F]:
        table[c] = True
    if zh:
        from sacrebleu.tokenizers.tokenizer_zh import _UCODE_RANGES
        for start, end in _UCODE_RANGES:
            for cp in range(ord(start[0]), ord(end[0]) + 1):
                if start <= chr(cp) <= end:
                    table[cp] = True
    return table


def _space_out(lines: list[str], table: np.ndarray) -> list[str]:
    """Put a space before and after every character marked in ``table``, for all lines at once."""
    if not lines:
        return []
    cps = np.frombuffer("".join(lines).encode("utf-32-le"), dtype=np.uint32)
    mark = table[cps]
    before = np.zeros(len(cps) + 1, dtype=np.int64)        # marked characters before each position
    np.cumsum(mark, dtype=np.int64, out=before[1:])
    out = np.full(len(cps) + 2 * int(before[-1]), 32, dtype=np.uint32)
    out[np.arange(len(cps)) + 2 * before[:-1] + mark] = cps
    text = out.tobytes().decode("utf-32-le")
    bounds = np.concatenate([[0], np.cumsum([len(x) for x in lines])])
    bounds = (bounds + 2 * before[bounds]).tolist()
    return [text[s:e] for s, e in zip(bounds[:-1], bounds[1:])]


class _FastRegexp:
    """sacrebleu's TokenizerRegexp rules 2-4 (its own regexes), run only when the line holds a
    character they can match; rule 1 is done by _space_out."""

    def __init__(self):
        from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp
        rules = TokenizerRegexp()._re
        assert len(rules) == 4, "sacrebleu's TokenizerRegexp changed; update evalkit.tokenize"
        self._rest = [(rx, repl, need) for (rx, repl), need in zip(rules[1:], (".,", ".,", "-"))]

    def rules(self, line: str) -> str:
        for rx, repl, need in self._rest:
            if any(c in line for c in need):
                line = rx.sub(repl, line)
        return line

    def __call__(self, line: str) -> str:
        return " ".join(self.rules(line).split())


class FastTokenizerZh:
    """Same output as sacrebleu.tokenizers.tokenizer_zh.TokenizerZh, many times faster in batch."""

    zh = True

    def __init__(self):
        self._table = _spaced(self.zh)
        self._post = _FastRegexp()

    def signature(self) -> str:
        return "zh"

    def _pre(self, line: str) -> str:
        return line.strip()

    def batch(self, lines: list[str]) -> list[str]:
        return [self._post(x) for x in _space_out([self._pre(x) for x in lines], self._table)]

    def ids_batch(self, lines: list[str], vocab: dict) -> list[np.ndarray]:
        """The tokens of ``batch(lines)`` (split on spaces) as ids, without building token lists."""
        spaced = _space_out([self._pre(x) for x in lines], self._table)
        spaced = [self._post.rules(x) for x in spaced]
        return whitespace_token_ids(spaced, vocab)

    def __call__(self, line: str) -> str:
        return self.batch([line])[0]


class FastTokenizer13a(FastTokenizerZh):
    """Same output as sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a."""

    zh = False

    def signature(self) -> str:
        return "13a"

    def _pre(self, line: str) -> str:
        line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
        if "&" in line:
            line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        return f" {line} "


def sacrebleu_tokenizer(name: str):
    """A callable line -> tokenized line, equal to sacrebleu's tokenizer ``name``."""
    if name == "zh":
        return FastTokenizerZh()
    if name == "13a":
        return FastTokenizer13a()
    from sacrebleu.metrics.bleu import _TOKENIZERS, _get_tokenizer
    if name not in _TOKENIZERS:
        raise ValueError(f"unknown BLEU tokenizer {name!r} (sacrebleu has {', '.join(sorted(_TOKENIZERS))})")
    return _get_tokenizer(name)()


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)
