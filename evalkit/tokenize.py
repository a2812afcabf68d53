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

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_CJK_TOKEN = re.compile(r"[A-Za-z0-9]+|\S")


class CjkTokenizer:
    """rouge-score ``tokenizer=``: CJK characters, lower-cased ASCII alnum runs, other characters."""

    name = "cjk"

    def tokenize(self, text: str) -> list[str]:
        return _CJK_TOKEN.findall(text.translate(_ASCII_LOWER))


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


def rouge_tokenizer(name: str):
    if name == "cjk":
        return CjkTokenizer()
    if name == "jieba":
        return JiebaTokenizer()
    raise ValueError(f"unknown ROUGE tokenizer {name!r} (use cjk or jieba)")


# -- language --------------------------------------------------------------------------------

def is_cjk_char(ch: str) -> bool:
    """Han, kana, Hangul and CJK punctuation/compatibility blocks."""
    o = ord(ch)
    return (0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF
            or 0xFE30 <= o <= 0xFE4F or 0xFF00 <= o <= 0xFFEF or 0x20000 <= o <= 0x3FFFF)


def cjk_share(texts) -> float:
    """Fraction of non-space characters that are CJK, over all ``texts``."""
    cjk = total = 0
    for t in texts:
        for ch in t:
            if not ch.isspace():
                total += 1
                cjk += is_cjk_char(ch)
    return cjk / total if total else 0.0


def default_bleu_tokenizer(references) -> str:
    """``zh`` when at least 10% of the reference characters are CJK, else ``13a`` (sacrebleu's)."""
    return "zh" if cjk_share(references) >= 0.10 else "13a"


# -- sacrebleu tokenizers, fast ----------------------------------------------------------------

@lru_cache(maxsize=None)
def _zh_table() -> dict:
    """Code point -> " c " for every character sacrebleu's TokenizerZh splits off.

    Built from sacrebleu's own range table with its own comparison (``start <= ch <= end`` on
    strings), so quirks such as the 2-character bounds '\\u20000' are reproduced exactly.
    """
    from sacrebleu.tokenizers.tokenizer_zh import _UCODE_RANGES
    table = {}
    for start, end in _UCODE_RANGES:
        for cp in range(ord(start[0]), ord(end[0]) + 1):
            ch = chr(cp)
            if start <= ch <= end:
                table[cp] = f" {ch} "
    return table


# sacrebleu TokenizerRegexp's first rule, r'([\{-\~\[-\` -\&\(-\+\:-\@\/])' -> r' \1 ', is a
# per-character replacement: the same as a translate table.
_RE_PUNCT = "".join(chr(c) for c in [*range(0x7B, 0x7F), *range(0x5B, 0x61), *range(0x20, 0x27),
                                      *range(0x28, 0x2C), *range(0x3A, 0x41), 0x2F])
_PUNCT_TABLE = {ord(c): f" {c} " for c in _RE_PUNCT}


class _FastRegexp:
    """sacrebleu's TokenizerRegexp: rule 1 as a translate table, rules 2-4 its own regexes, run
    only when the line holds a character they can match."""

    def __init__(self):
        from sacrebleu.tokenizers.tokenizer_re import TokenizerRegexp
        rules = TokenizerRegexp()._re
        assert len(rules) == 4, "sacrebleu's TokenizerRegexp changed; update evalkit.tokenize"
        self._rest = [(rx, repl, need) for (rx, repl), need in zip(rules[1:], (".,", ".,", "-"))]

    def __call__(self, line: str) -> str:
        line = line.translate(_PUNCT_TABLE)
        for rx, repl, need in self._rest:
            if any(c in line for c in need):
                line = rx.sub(repl, line)
        return " ".join(line.split())


class FastTokenizerZh:
    """Same output as sacrebleu.tokenizers.tokenizer_zh.TokenizerZh, several times faster."""

    def __init__(self):
        self._table = _zh_table()
        self._post = _FastRegexp()

    def signature(self) -> str:
        return "zh"

    def __call__(self, line: str) -> str:
        return self._post(line.strip().translate(self._table))


class FastTokenizer13a:
    """Same output as sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a."""

    def __init__(self):
        self._post = _FastRegexp()

    def signature(self) -> str:
        return "13a"

    def __call__(self, line: str) -> str:
        line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
        if "&" in line:
            line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        return self._post(f" {line} ")


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
