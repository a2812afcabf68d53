"""Learning the domain's Chinese pieces with a character-level BPE (``tokenizers``).

Chinese has no spaces, so words are not whitespace-split: the trainer sees maximal runs of
Chinese characters of one class (letters, digits, punctuation: the classes a byte-level
pre-tokenizer keeps apart), and a run is cut at every character outside the coverage set, so
a learned piece never spans a character the base keeps as bytes.  Character coverage works as
in sentencepiece: the most frequent characters making up ``coverage`` of all occurrences.

The result is an ordered list: the covered characters (most frequent first), then every merged
piece in the order BPE learned it, with the two pieces it was merged from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .corpus import char_counts, cjk_runs, covered_chars


@dataclass
class DomainPieces:
    chars: list[str]                                   # covered characters, most frequent first
    merges: list[tuple[str, str]]                      # (left, right) in learned order; piece = left + right
    char_counts: dict[str, int] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def pieces(self) -> list[str]:
        return self.chars + [a + b for a, b in self.merges]


def _words(texts: Iterable[str], keep: set[str]) -> Iterator[str]:
    for t in texts:
        for run in cjk_runs(t):
            word = []
            for ch in run:
                if ch in keep:
                    word.append(ch)
                elif word:
                    yield "".join(word)
                    word = []
            if word:
                yield "".join(word)


def train_domain_bpe(texts: list[str], merges: int, *, coverage: float = 0.9995, min_frequency: int = 3,
                     max_piece_len: int = 8, progress: bool = True) -> DomainPieces:
    """Train a character-level BPE on the Chinese runs of ``texts`` and return its pieces.

    ``merges`` is how many multi-character pieces to learn at most (fewer when pairs fall below
    ``min_frequency``).  Example::

        dp = train_domain_bpe(["患者有胰岛素抵抗。", "胰岛素抵抗常见于肥胖。"] * 50, 20)
        dp.chars[:3], dp.merges[:2]
    """
    from tokenizers import Tokenizer, models, trainers

    counts = char_counts(texts)
    chars = covered_chars(counts, coverage)
    keep = set(chars)
    tok = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=len(chars) + merges, min_frequency=min_frequency,
                                  initial_alphabet=chars, limit_alphabet=len(chars),
                                  max_token_length=max_piece_len, show_progress=progress)
    tok.train_from_iterator(_words(texts, keep), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    learned = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return DomainPieces(chars=chars, merges=learned, char_counts=dict(counts.most_common()),
                        settings={"trainer": "tokenizers.BpeTrainer (character level)", "merges": merges,
                                  "coverage": coverage, "min_frequency": min_frequency,
                                  "max_piece_len": max_piece_len, "covered_chars": len(chars),
                                  "distinct_chars": len(counts)})
