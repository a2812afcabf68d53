"""Which items experts review: stratified by task, weighted toward items the automatic metrics
score low or disagree about (the items where screening is least trustworthy).

    >>> from evalkit.review.sampling import sample_items
    >>> picked = sample_items(items, n=100, seed=0)   # [{"item": ..., "weight": w, "inclusion": p}, ...]

How it works, per task (each task's metrics are ranked among that task's items only):

- every metric score becomes a percentile rank in [0, 1] (ties share their average rank); a metric
  with the same value for every item of the task is left out (it ranks nothing);
- ``low`` = 1 - the mean of the item's ranks; ``dispute`` = the spread (max - min) of its ranks,
  i.e. how much BLEU, chrF, ROUGE ... disagree about it;
- weight = 1 + 2·low + 2·dispute, so the worst or most disputed item is up to 5x as likely as the
  best undisputed one, and every item keeps a chance;
- the task gets a share of ``n`` proportional to its size (largest remainder, at least one item
  each when ``n`` allows), filled by weighted sampling without replacement (Efraimidis-Spirakis
  keys u^(1/w)).  u comes from a hash of (seed, item id), so the same seed always picks the same
  items, and a task given more picks keeps every item it picked before.

``inclusion`` is each picked item's approximate inclusion probability, used by the report to
reweight means back to the whole run.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict

AUTO_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "em", "contains", "correct")


def auto_scores(item: dict) -> dict[str, float]:
    """The item's automatic scores as numbers (``correct`` true/false becomes 1/0; null is skipped)."""
    out = {}
    for m in AUTO_METRICS:
        v = item.get(m)
        if isinstance(v, bool):
            out[m] = float(v)
        elif isinstance(v, (int, float)) and not math.isnan(v):
            out[m] = float(v)
    return out


def percentile_ranks(values: list[float]) -> list[float]:
    """Each value's rank scaled to [0, 1] (ties get their average rank; a single value gets 0.5)."""
    n = len(values)
    if n == 1:
        return [0.5]
    order = sorted(range(n), key=lambda i: values[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 / (n - 1)
        i = j + 1
    return ranks


def screening_ranks(items: list[dict]) -> list[dict[str, float]]:
    """Per item, {metric: percentile rank among the items given} (rank within whatever group)."""
    by_metric: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for i, item in enumerate(items):
        for m, v in auto_scores(item).items():
            by_metric[m].append((i, v))
    out: list[dict[str, float]] = [{} for _ in items]
    for m, pairs in by_metric.items():
        if len({v for _, v in pairs}) < 2:
            continue          # a metric that is the same for every item (EM 0 on long answers) says nothing
        for (i, _), r in zip(pairs, percentile_ranks([v for _, v in pairs])):
            out[i][m] = r
    return out


def weight_of(ranks: dict[str, float]) -> tuple[float, float, float]:
    """(weight, low, dispute) for one item's metric ranks."""
    if not ranks:
        return 1.0, 0.0, 0.0
    vals = list(ranks.values())
    low = 1.0 - sum(vals) / len(vals)
    dispute = max(vals) - min(vals)
    return 1.0 + 2.0 * low + 2.0 * dispute, low, dispute


def _uniform(seed: int, item_id: str) -> float:
    h = hashlib.sha256(f"{seed}\x1f{item_id}".encode()).digest()
    return (int.from_bytes(h[:8], "big") + 0.5) / 2.0 ** 64


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split n over strata proportionally to their sizes (largest remainder; at least 1 each when
    n >= number of strata; never more than a stratum has)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    alloc = {t: 0 for t in sizes}
    if n >= len(sizes):
        alloc = {t: 1 for t in sizes}
    rest = n - sum(alloc.values())
    room = {t: sizes[t] - alloc[t] for t in sizes}
    room_total = sum(room.values())
    quotas = {t: rest * room[t] / room_total for t in sizes} if room_total else {t: 0 for t in sizes}
    for t in sizes:
        alloc[t] += int(quotas[t])
    left = n - sum(alloc.values())
    for t in sorted(sizes, key=lambda t: (-(quotas[t] - int(quotas[t])), t)):
        if left == 0:
            break
        if alloc[t] < sizes[t]:
            alloc[t] += 1
            left -= 1
    return alloc


def sample_items(items: list[dict], n: int | None = None, seed: int = 0) -> list[dict]:
    """Pick ``n`` items (all when n is None or >= len(items)), stratified by ``task`` and weighted
    toward low or disputed automatic scores.  Returns [{item, weight, low, dispute, inclusion}]
    in the order of ``items``."""
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_task[str(item.get("task") or "default")].append(i)
    weights: dict[int, tuple[float, float, float]] = {}
    for idx in by_task.values():
        for i, ranks in zip(idx, screening_ranks([items[i] for i in idx])):
            weights[i] = weight_of(ranks)
    want = len(items) if n is None else min(n, len(items))
    alloc = allocate({t: len(idx) for t, idx in by_task.items()}, want)
    picked: dict[int, float] = {}
    for task, idx in by_task.items():
        k = alloc[task]
        total_w = sum(weights[i][0] for i in idx)
        keyed = sorted(idx, key=lambda i: -math.log(_uniform(seed, str(items[i]["id"]))) / weights[i][0])
        for i in keyed[:k]:
            picked[i] = 1.0 if k >= len(idx) else min(1.0, k * weights[i][0] / total_w)
    return [{"item": items[i], "weight": round(weights[i][0], 6), "low": round(weights[i][1], 6),
             "dispute": round(weights[i][2], 6), "inclusion": round(picked[i], 6)}
            for i in sorted(picked)]
