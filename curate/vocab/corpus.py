"""What vocabulary expansion reads: texts from any input curate reads (raw or curated), a stable
held-out split, and which characters count as Chinese.

The character set matters beyond training: every piece added to a tokenizer is made only of
these characters, so a text with none of them tokenizes exactly as before (see bytelevel.py).
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from ..reading import InputError, SourceSpec, expand_inputs, parse_mapping, read_source
from ..schema import FIELDS, all_text
from ..writing import read_records

# Blocks whose letters, digits and punctuation may become new tokens: Han ideographs (BMP, the
# extension A block, compatibility ideographs, supplementary planes 2-3), CJK symbols and
# punctuation, and the fullwidth forms Chinese text uses (！，：？（）０-９Ａ-Ｚ￥).  Not General
# Punctuation (“ ” — …): English uses those too, and its token ids must not change.
CJK_BLOCKS = ((0x3001, 0x303F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
              (0xFF01, 0xFF60), (0xFFE0, 0xFFE6), (0x20000, 0x3FFFF))


def is_cjk(ch: str) -> bool:
    """True for a character that new tokens may be built from (assigned, not a space)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_BLOCKS) and unicodedata.category(ch)[0] not in "CZ"


def char_class(ch: str) -> str:
    """'L' letter, 'N' digit or 'P' punctuation/symbol: the classes byte-level pre-tokenizers
    (GPT-2, Llama-3, Qwen regexes) never join, so a new piece never mixes them."""
    c = unicodedata.category(ch)[0]
    return c if c in "LN" else "P"


@lru_cache(maxsize=1)
def _run_pattern() -> re.Pattern:
    classes: dict[str, list[tuple[int, int]]] = {"L": [], "N": [], "P": []}
    for lo, hi in CJK_BLOCKS:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if not is_cjk(ch):
                continue
            ranges = classes[char_class(ch)]
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    def cls(ranges):
        return "[" + "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                             for a, b in ranges) + "]+"
    return re.compile("|".join(cls(classes[k]) for k in "LNP"))


def cjk_runs(text: str) -> Iterator[str]:
    """Maximal runs of Chinese characters of one class: the 'words' a domain tokenizer learns from."""
    for m in _run_pattern().finditer(text):
        yield m.group()


def cjk_count(text: str) -> int:
    return sum(len(r) for r in cjk_runs(text))


# -- inputs ------------------------------------------------------------------------------------

@dataclass
class Corpus:
    """Texts read for training and for the held-out measurement, with counts per input file."""
    train: list[str] = field(default_factory=list)
    heldout: list[str] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)   # path -> {"format", "read", "rejected"}


def is_curated(path: str) -> bool:
    """A file written by ``curate run`` (the schema's own columns), as opposed to a raw corpus."""
    p = Path(path)
    try:
        if p.suffix == ".parquet":
            import polars as pl
            return set(FIELDS) <= set(pl.read_parquet_schema(p))
        if p.suffix == ".jsonl":
            with open(p, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        return isinstance(row, dict) and {"id", "source", "messages"} <= set(row)
    except (OSError, ValueError):
        return False
    return False


def in_heldout(rec_id: str, fraction: float, seed: int) -> bool:
    """Stable split: the same record is held out whatever order or machine it is read on."""
    h = hashlib.blake2b(f"{seed}:{rec_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


def _mappings(patterns: list[str], mapping) -> list[dict]:
    """One --map for every input, or one per input in order ('' or 'auto' for an input's own shape)."""
    maps = mapping if isinstance(mapping, (list, tuple)) else [mapping]
    maps = [parse_mapping(m) if isinstance(m, str) and m not in ("", "auto") else (m if isinstance(m, dict) else {})
            for m in maps]
    if len(maps) == 1:
        return maps * len(patterns)
    if len(maps) != len(patterns):
        raise InputError(f"{len(maps)} --map values for {len(patterns)} --input values: give one for all inputs, "
                         "or one per input in the same order ('auto' for an input's own shape)")
    return maps


def read_corpus(inputs: Iterable[str], mapping: str | dict | list | None = None, *, heldout: float = 0.05,
                seed: int = 0) -> Corpus:
    """Read every input (files, globs, folders; raw in any shape curate reads, or curated sets)
    into train and held-out texts.  A record's text is all its turns (or its document text).
    ``mapping`` is one column mapping for all inputs or a list with one per input."""
    patterns = list(inputs)
    corpus = Corpus()
    for pattern, cols in zip(patterns, _mappings(patterns, mapping)):
        for path in expand_inputs([pattern]):
            if path in corpus.sources:
                continue
            stats = {"format": "curated" if is_curated(path) else "raw", "read": 0, "rejected": 0}
            if stats["format"] == "curated":
                records: Iterable = ((r, None) for r in read_records(path))
            else:
                records = read_source(SourceSpec(path, mapping=cols))
            for rec, reject in records:
                if reject is not None:
                    stats["rejected"] += 1
                    continue
                stats["read"] += 1
                text = all_text(rec)
                if text:
                    split = corpus.heldout if in_heldout(f"{path}:{rec['id']}", heldout, seed) else corpus.train
                    split.append(text)
            corpus.sources[path] = stats
    if not corpus.train:
        raise InputError(f"no text to learn from in {patterns}")
    return corpus


def char_counts(texts: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for t in texts:
        for run in cjk_runs(t):
            counts.update(run)
    return counts


def covered_chars(counts: Counter, coverage: float, min_count: int = 2) -> list[str]:
    """The most frequent characters that together make up ``coverage`` of all occurrences
    (sentencepiece's character_coverage), most frequent first; rarer ones stay byte pieces."""
    total = sum(counts.values())
    kept, seen = [], 0
    for ch, n in counts.most_common():
        if seen >= coverage * total or n < min_count:
            break
        kept.append(ch)
        seen += n
    return kept
