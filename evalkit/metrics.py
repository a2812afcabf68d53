"""Text metrics: per-item statistics first, then aggregation (sacrebleu's design).

Every metric here is a ``MetricResult``: one row of statistics per item, the per-item score, a
function that turns *summed* statistics into the aggregate score (corpus BLEU/chrF, the mean for
the rest), and a signature saying exactly how it was computed.  Bootstrap intervals, per-task
breakdowns and paired tests all reuse ``score_from_sums``.

* ``bleu`` / ``chrf``: the statistics are sacrebleu's own (hypothesis length, reference length,
  matches and totals per order), counted by ``evalkit.ngrams`` at C speed; sacrebleu turns them
  into scores (``_compute_score_from_stats``).  Items with several references go through
  sacrebleu's own statistics code.  0-100, like sacrebleu.
* ``rouge1`` / ``rouge2`` / ``rougeL``: F-measure as rouge-score computes it (same formulas,
  ``scoring.fmeasure``) with a CJK-aware tokenizer; n-gram overlaps from ``evalkit.ngrams`` and the
  LCS bit-parallel.  0-1.  With several references the best F per type wins, as in
  ``RougeScorer.score_multi``.
* ``em`` / ``contains``: normalized exact match / reference contained in the prediction.  0-1.

    >>> r = rouge(["模型很强"], [["模型很弱"]])
    >>> round(float(r["rougeL"].item_scores[0]), 3)
    0.75
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Callable, Sequence

import numpy as np

from . import __version__ as EVALKIT_VERSION
from .ngrams import lcs_length, match_counts
from .tokenize import default_bleu_tokenizer, rouge_tokenizer, sacrebleu_tokenizer

TEXT_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "em", "contains")


@dataclass
class MetricResult:
    name: str
    stats: np.ndarray                          # (n_items, k) per-item sufficient statistics
    item_scores: np.ndarray                    # (n_items,) per-item score
    score_from_sums: Callable[[np.ndarray, int], float] = field(repr=False)
    signature: str = ""
    scale: float = 1.0                         # 100 for BLEU/chrF (sacrebleu's convention)

    def score(self, rows: np.ndarray | None = None) -> float:
        """The aggregate over all items, or over ``rows`` (indices)."""
        stats = self.stats if rows is None else self.stats[rows]
        return self.score_from_sums(stats.sum(0), len(stats)) if len(stats) else float("nan")


def _mean_of_first(sums: np.ndarray, n: int) -> float:
    return float(sums[0] / n) if n else float("nan")


class Vocab(dict):
    """token -> id, new tokens numbered on first sight (lookups run at C speed through map)."""

    def __missing__(self, token):
        self[token] = n = len(self)
        return n


def _ids(tokens: list[str], vocab: Vocab) -> np.ndarray:
    return np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int64, count=len(tokens))


def _single_refs(refs: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    one = np.array([len(r) == 1 for r in refs], dtype=bool)
    return np.flatnonzero(one), np.flatnonzero(~one)


def _versions_sig() -> str:
    return f"evalkit:{EVALKIT_VERSION}"


# -- BLEU ------------------------------------------------------------------------------------

def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], tokenize: str | None = None,
         lowercase: bool = False) -> MetricResult:
    """Corpus BLEU (and sentence BLEU per item, effective order), sacrebleu's numbers."""
    from sacrebleu.metrics import BLEU
    tokenize = tokenize or default_bleu_tokenizer(r for rs in refs for r in rs)
    corpus = BLEU(tokenize=tokenize, lowercase=lowercase)
    sentence = BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
    order = corpus.max_ngram_order
    stats = np.zeros((len(hyps), 2 + 2 * order), dtype=np.int64)
    single, multi = _single_refs(refs)
    tok = sacrebleu_tokenizer(tokenize)
    prep = [(s.lower() if lowercase else s).rstrip() for s in [hyps[i] for i in single] + [refs[i][0] for i in single]]
    if hasattr(tok, "ids_batch"):   # the fast zh/13a twins: ids straight from the spaced text
        ids = tok.ids_batch(prep, {})
    else:
        vocab = Vocab()
        ids = [_ids(tok(s).split(), vocab) for s in prep]
    h_ids, r_ids = ids[: len(single)], ids[len(single):]
    counts = match_counts(h_ids, r_ids, orders=range(1, order + 1))
    hl = np.array([len(h) for h in h_ids], dtype=np.int64)
    stats[single, 0] = hl
    stats[single, 1] = [len(r) for r in r_ids]
    for n in range(1, order + 1):
        stats[single, 1 + n] = counts[n]
        stats[single, 1 + order + n] = np.maximum(hl - n + 1, 0)
    for i in multi:   # several references: sacrebleu's own code (max counts, closest length)
        stats[i] = corpus._extract_corpus_statistics([hyps[i]], [[r] for r in refs[i]])[0]
    corpus.num_refs = max((len(r) for r in refs), default=1) if len({len(r) for r in refs}) <= 1 else -1
    items = np.array([sentence._compute_score_from_stats(list(s)).score for s in stats.tolist()])
    sig = f"bleu|{corpus.get_signature().format()}|n:{len(hyps)}|{_versions_sig()}"
    return MetricResult("bleu", stats, items, lambda sums, n: corpus._compute_score_from_stats(list(sums)).score,
                        sig, scale=100.0)


# -- chrF ------------------------------------------------------------------------------------

def chrf(hyps: Sequence[str], refs: Sequence[Sequence[str]], lowercase: bool = False) -> MetricResult:
    """chrF (character 6-grams, beta 2, whitespace removed): sacrebleu's CHRF numbers."""
    from sacrebleu.metrics import CHRF
    metric = CHRF(lowercase=lowercase)
    order = metric.char_order
    prep = (lambda s: "".join((s.lower() if lowercase else s).split()))
    # expand (hyp, ref_k) pairs; keep the reference with the best f-score (first on ties)
    pair_item, pair_h, pair_r = [], [], []
    for i, rs in enumerate(refs):
        for r in rs:
            pair_item.append(i)
            pair_h.append(hyps[i])
            pair_r.append(r)
    h_ids = [np.frombuffer(prep(h).encode("utf-32-le"), dtype=np.uint32).astype(np.int64) for h in pair_h]
    r_ids = [np.frombuffer(prep(r).encode("utf-32-le"), dtype=np.uint32).astype(np.int64) for r in pair_r]
    counts = match_counts(h_ids, r_ids, orders=range(1, order + 1))
    hl = np.array([len(h) for h in h_ids], dtype=np.int64)
    rl = np.array([len(r) for r in r_ids], dtype=np.int64)
    pair_stats = np.zeros((len(pair_h), 3 * order), dtype=np.int64)
    for n in range(1, order + 1):
        ref_total = np.maximum(rl - n + 1, 0)
        # sacrebleu: the hypothesis count is 0 when the reference has no n-gram of that order
        pair_stats[:, 3 * (n - 1)] = np.where(ref_total > 0, np.maximum(hl - n + 1, 0), 0)
        pair_stats[:, 3 * (n - 1) + 1] = ref_total
        pair_stats[:, 3 * (n - 1) + 2] = counts[n]
    stats = np.zeros((len(hyps), 3 * order), dtype=np.int64)
    best = np.full(len(hyps), -1.0)
    for p, i in enumerate(pair_item):
        f = metric._compute_f_score(pair_stats[p].tolist()) if len(refs[i]) > 1 else 0.0
        if f > best[i]:
            best[i] = f
            stats[i] = pair_stats[p]
    items = np.array([metric._compute_score_from_stats(list(s)).score for s in stats.tolist()])
    metric.num_refs = max((len(r) for r in refs), default=1) if len({len(r) for r in refs}) <= 1 else -1
    sig = f"chrf|{metric.get_signature().format()}|n:{len(hyps)}|{_versions_sig()}"
    return MetricResult("chrf", stats, items, lambda sums, n: metric._compute_score_from_stats(list(sums)).score,
                        sig, scale=100.0)


# -- ROUGE -----------------------------------------------------------------------------------

def rouge(hyps: Sequence[str], refs: Sequence[Sequence[str]], tokenizer: str = "cjk") -> dict[str, MetricResult]:
    """ROUGE-1/2/L F-measures, equal to rouge_scorer.RougeScorer(tokenizer=...) item by item."""
    from rouge_score.scoring import fmeasure
    tok = rouge_tokenizer(tokenizer)
    pair_item = [i for i, rs in enumerate(refs) for _ in rs]
    ref_texts = [r for rs in refs for r in rs]
    if hasattr(tok, "ids_batch"):   # vectorized, same tokens (tested against tok.tokenize)
        vocab: dict = {}
        hyp_ids = tok.ids_batch(list(hyps), vocab)
        r_ids = tok.ids_batch(ref_texts, vocab)
    else:
        vocab = Vocab()
        hyp_ids = [_ids(tok.tokenize(h), vocab) for h in hyps]
        r_ids = [_ids(tok.tokenize(r), vocab) for r in ref_texts]
    h_ids = [hyp_ids[i] for i in pair_item]
    counts = match_counts(h_ids, r_ids, orders=(1, 2))
    prf = {name: np.zeros((len(pair_item), 3)) for name in ("rouge1", "rouge2", "rougeL")}
    for p in range(len(pair_item)):
        lh, lr = len(h_ids[p]), len(r_ids[p])
        for n, name in ((1, "rouge1"), (2, "rouge2")):   # rouge_scorer._score_ngrams
            inter = int(counts[n][p])
            prec = inter / max(lh - n + 1 if lh >= n else 0, 1)
            rec = inter / max(lr - n + 1 if lr >= n else 0, 1)
            prf[name][p] = (prec, rec, fmeasure(prec, rec))
        if lh and lr:                                    # rouge_scorer._score_lcs
            lcs = lcs_length(h_ids[p].tolist(), r_ids[p].tolist())
            prec, rec = lcs / lh, lcs / lr
            prf["rougeL"][p] = (prec, rec, fmeasure(prec, rec))
    out = {}
    rs_version = version("rouge-score")
    nrefs = max((len(r) for r in refs), default=1) if len({len(r) for r in refs}) <= 1 else "var"
    for name, table in prf.items():
        stats = np.zeros((len(hyps), 3))
        best = np.full(len(hyps), -1.0)
        for p, i in enumerate(pair_item):   # score_multi: the first reference with the best F
            if table[p, 2] > best[i]:
                best[i] = table[p, 2]
                stats[i] = table[p]
        stats = stats[:, [2, 0, 1]]          # F first: the aggregate is the mean F
        sig = (f"{name}|nrefs:{nrefs}|tok:{tokenizer}|stat:F|agg:mean|n:{len(hyps)}"
               f"|rouge-score:{rs_version}|{_versions_sig()}")
        out[name] = MetricResult(name, stats, stats[:, 0].copy(), _mean_of_first, sig)
    return out


# -- exact match / contains ------------------------------------------------------------------

_EDGE_PUNCT = " \t\n.。,，!！?？;；:：、\"'“”‘’「」『』《》()（）[]【】`*"


def normalize_answer(s: str) -> str:
    """NFKC, lower case, whitespace collapsed (removed between CJK characters), edge punctuation off."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = " ".join(s.split())
    s = re.sub(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])", "", s)
    return s.strip(_EDGE_PUNCT)


def exact_match(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, MetricResult]:
    em, contains = np.zeros((len(hyps), 1)), np.zeros((len(hyps), 1))
    for i, (h, rs) in enumerate(zip(hyps, refs)):
        nh = normalize_answer(h)
        nrs = [normalize_answer(r) for r in rs]
        em[i, 0] = any(nh == r for r in nrs)
        contains[i, 0] = any(r and r in nh for r in nrs)
    tail = f"norm:nfkc-lower-space-punct|agg:mean|n:{len(hyps)}|{_versions_sig()}"
    return {"em": MetricResult("em", em, em[:, 0].copy(), _mean_of_first, f"em|{tail}"),
            "contains": MetricResult("contains", contains, contains[:, 0].copy(), _mean_of_first, f"contains|{tail}")}
