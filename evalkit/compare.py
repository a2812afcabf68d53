"""`evalkit compare RUN_A RUN_B`: is B better than A, per metric and per task, beyond chance?

Items are matched by id.  Per metric the difference B - A comes with a paired-bootstrap 95%
interval and an approximate-randomization p-value (evalkit.stats.paired_test); corpus BLEU and
chrF are recomputed from the per-item statistics both runs stored in items.jsonl.  The items whose
score changed most are listed, so a person can read what changed.

    >>> from evalkit.compare import compare_runs                          # doctest: +SKIP
    >>> compare_runs("runs/base", "runs/lora")["metrics"]["rougeL"]["all"]["p_value"]  # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .auto import SUMMARY_METRICS
from .report import _width
from .stats import paired_test


class CompareError(ValueError):
    pass


def _read_run(run) -> dict[str, dict]:
    path = Path(run) / "items.jsonl"
    if not path.is_file():
        raise CompareError(f"{run}: no items.jsonl (is it an `evalkit auto` run folder?)")
    rows = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CompareError(f"{path}:{n}: malformed JSON ({e.msg})") from None
                rows[str(row["id"])] = row
    return rows


def _scorer(metric: str):
    """(per-item stats from a row, score from summed stats) for one metric."""
    if metric in ("bleu", "chrf"):
        from sacrebleu.metrics import BLEU, CHRF
        m = BLEU() if metric == "bleu" else CHRF()
        return (lambda row: row.get("stats", {}).get(metric)), (lambda sums, n: m._compute_score_from_stats(list(sums)).score)
    mean = lambda sums, n: float(sums[0] / n)   # noqa: E731
    if metric == "choice_acc":
        return (lambda row: [float(row["correct"])] if "correct" in row else None), mean
    if metric == "choice_unparsed":
        return (lambda row: [float(row.get("extracted") is None)] if "answer" in row else None), mean
    return (lambda row: [float(row[metric])] if isinstance(row.get(metric), (int, float)) else None), mean


def compare_runs(run_a, run_b, trials: int = 2000, seed: int = 0, top: int = 10) -> dict:
    a, b = _read_run(run_a), _read_run(run_b)
    common = sorted(set(a) & set(b))
    if not common:
        raise CompareError(f"{run_a} and {run_b} share no item ids")
    out = {"run_a": str(run_a), "run_b": str(run_b), "items_common": len(common),
           "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)), "trials": trials, "seed": seed,
           "test": "paired bootstrap 95% interval; approximate randomization p-value (two-sided)", "metrics": {}}
    for metric in SUMMARY_METRICS:
        get, score = _scorer(metric)
        ids = [i for i in common if get(a[i]) is not None and get(b[i]) is not None]
        if not ids:
            continue
        sa = np.array([get(a[i]) for i in ids], dtype=np.float64)
        sb = np.array([get(b[i]) for i in ids], dtype=np.float64)
        entry = {"all": paired_test(sa, sb, score, trials, seed), "tasks": {}}
        tasks = np.array([str(a[i].get("task") or "default") for i in ids])
        for task in sorted(set(tasks)):
            sel = tasks == task
            entry["tasks"][task] = paired_test(sa[sel], sb[sel], score, trials, seed)
        deltas = []
        for i in ids:
            va, vb = _item_value(a[i], metric), _item_value(b[i], metric)
            if va is not None and vb is not None and va != vb:
                deltas.append((vb - va, i, va, vb))
        deltas.sort(key=lambda d: -abs(d[0]))
        entry["changed_most"] = [{"id": i, "task": a[i].get("task"), "a": va, "b": vb, "diff": d,
                                  "prediction_a": a[i].get("prediction"), "prediction_b": b[i].get("prediction")}
                                 for d, i, va, vb in deltas[:top]]
        out["metrics"][metric] = entry
    return out


def _item_value(row: dict, metric: str):
    if metric == "choice_acc":
        return float(row["correct"]) if "correct" in row else None
    if metric == "choice_unparsed":
        return float(row.get("extracted") is None) if "answer" in row else None
    v = row.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def format_compare(result: dict) -> str:
    lines = [f"{result['items_common']} common items (only in A: {result['only_in_a']}, only in B: {result['only_in_b']})",
             f"{'metric':<18}{'A':>9}{'B':>9}{'B-A':>9}  {'95% CI of B-A':<22}{'p':>7}"]

    def row(label, t):
        ci = f"[{t['ci_low']:+.4g}, {t['ci_high']:+.4g}]"
        label += " " * max(0, 18 - _width(label))
        return f"{label}{t['a']:>9.4g}{t['b']:>9.4g}{t['diff']:>+9.4g}  {ci:<22}{t['p_value']:>7.3g}"

    for name, e in result["metrics"].items():
        lines.append(row(name, e["all"]))
        if len(e["tasks"]) > 1:
            lines += [row(f"  {task[:15]}", t) for task, t in e["tasks"].items()]
    return "\n".join(lines)
