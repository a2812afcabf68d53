"""`evalkit report RUN`: automatic and expert scores joined, per item and in aggregate.

    >>> from evalkit.review.report import build_report
    >>> report = build_report("runs/med")          # writes runs/med/report.json and report.html
    >>> report["correlation"]["rougeL"]["accuracy"]   # can ROUGE-L screening be trusted here?

The rule it serves: automatic scores screen, experts decide.  report.json holds

- ``human``: per scored dimension, the mean over reviewed items (each item the mean of its
  annotators) with a 95% bootstrap interval over items and ``n`` items; ``mean_run`` reweights
  by the sample's inclusion probabilities toward the whole run; nominal dimensions give a
  ``distribution`` instead of a mean;
- ``agreement``: per dimension, Krippendorff's alpha at the dimension's level of measurement and
  Cohen's kappa for every pair of annotators (quadratic-weighted too for ordinal ratings);
- ``correlation``: {metric: {dimension: Spearman rho}} over reviewed items (``correlation_n``
  gives the item counts);
- ``disagreements``: the items whose automatic rank and expert rank differ most;
- ``items``: every reviewed item with its automatic scores and each annotator's values.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from collections import defaultdict
from itertools import combinations
from pathlib import Path

from curate.writing import write_json, write_text

from ..rubric import level_of_measurement, numeric_value, value_range
from .client import ReviewError
from .export import REVIEW_DIR, item_key, read_items, tool_versions
from .html import GENERATOR, render_html
from .importing import load_rubric_of
from .sampling import auto_scores, percentile_ranks
from .stats import cohen_kappa, krippendorff_alpha, mean_ci, spearman

RESAMPLES, SEED = 2000, 0
GENERATOR_TAG = f'<meta name="generator" content="{GENERATOR}">'
SIGNATURE = (f"human:item-mean-of-annotators|ci:bootstrap-percentile|resamples:{RESAMPLES}|seed:{SEED}|unit:item;"
             "agreement:krippendorff-alpha(coincidence)|cohen-kappa(pairwise,unweighted+quadratic);"
             "correlation:spearman(average-ranks)|human:item-mean")


def read_annotations(run: Path) -> list[dict]:
    path = run / REVIEW_DIR / "annotations.jsonl"
    if not path.is_file():
        raise ReviewError(f"{path} does not exist: run `evalkit review import` first")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _round(v, nd=4):
    return None if v is None else round(float(v), nd)


def _dimension_summary(dim: dict, per_item: dict[str, list], inclusion: dict[str, float]) -> dict:
    """Mean (or distribution) of one dimension over items; per_item: {key: [values by annotator]}."""
    level = level_of_measurement(dim)
    keys = [k for k, vs in per_item.items() if vs]
    if level == "nominal":
        dist: dict[str, float] = defaultdict(float)
        for k in keys:
            for v in per_item[k]:
                dist[v] += 1.0 / len(per_item[k])     # each item counts once, split over its votes
        total = sum(dist.values())
        return {"level": level, "n": len(keys), "n_ratings": sum(len(per_item[k]) for k in keys),
                "mean": None, "ci_low": None, "ci_high": None,
                "distribution": {v: _round(c / total) for v, c in sorted(dist.items())} if total else {}}
    item_means = [sum(per_item[k]) / len(per_item[k]) for k in keys]
    mean, low, high = mean_ci(item_means, resamples=RESAMPLES, seed=SEED)
    w = [1.0 / inclusion.get(k, 1.0) for k in keys]
    mean_run = sum(m * wt for m, wt in zip(item_means, w)) / sum(w) if keys else None
    lo, hi = value_range(dim)
    return {"level": level, "n": len(keys), "n_ratings": sum(len(per_item[k]) for k in keys),
            "mean": _round(mean), "ci_low": _round(low), "ci_high": _round(high), "mean_run": _round(mean_run),
            "scale": [lo, hi]}


def _agreement(dim: dict, values: dict[str, dict[str, object]], annotators: list[str]) -> dict:
    """values: {key: {annotator: value}} for one dimension."""
    level = level_of_measurement(dim)
    keys = sorted(values)
    matrix = [[values[k].get(a) for k in keys] for a in annotators]
    pairable = sum(1 for k in keys if len(values[k]) >= 2)
    out = {"level": level, "krippendorff_alpha": _round(krippendorff_alpha(matrix, level)) if matrix else None,
           "units_pairable": pairable, "cohen_kappa": {}}
    for a, b in combinations(annotators, 2):
        both_rated = [k for k in keys if a in values[k] and b in values[k]]
        if len(both_rated) < 2:
            continue
        xa, xb = [values[k][a] for k in both_rated], [values[k][b] for k in both_rated]
        entry = {"n": len(both_rated), "kappa": _round(cohen_kappa(xa, xb))}
        if level in ("ordinal", "interval"):
            entry["kappa_quadratic"] = _round(cohen_kappa(xa, xb, weights="quadratic"))
        out["cohen_kappa"][f"{a} | {b}"] = entry
    return out


def build_report(run, *, rubric_path=None, top: int = 10) -> dict:
    """Join RUN/items.jsonl, RUN/summary.json and the imported annotations; write report.json and
    report.html in RUN and return the report."""
    run = Path(run)
    rubric = load_rubric_of(run, rubric_path)
    items = read_items(run)
    annotations = read_annotations(run)
    summary_path = run / "summary.json"
    auto_summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    manifest_path = run / REVIEW_DIR / "export.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    inclusion = {e["key"]: e.get("inclusion") or 1.0 for e in manifest.get("items", [])}

    by_key = {item_key(i): i for i in items}
    annotations = [a for a in annotations if a["key"] in by_key]
    annotators = sorted({a["annotator"] for a in annotations})
    scored = [d for d in rubric["dimensions"] if level_of_measurement(d)]
    # {dim: {key: {annotator: value}}}, values numeric except nominal choices
    values: dict[str, dict[str, dict]] = {d["name"]: defaultdict(dict) for d in scored}
    comments: dict[str, list] = defaultdict(list)
    for a in annotations:
        for d in rubric["dimensions"]:
            v = a["values"].get(d["name"])
            if v is None:
                continue
            if d["type"] == "text":
                comments[a["key"]].append({"annotator": a["annotator"], "dimension": d["name"], "text": v})
            else:
                nv = numeric_value(d, v)
                if nv is not None:
                    values[d["name"]][a["key"]][a["annotator"]] = nv
    reviewed = sorted({a["key"] for a in annotations}, key=lambda k: str(by_key[k]["id"]))

    human = {d["name"]: _dimension_summary(d, {k: list(values[d["name"]].get(k, {}).values()) for k in reviewed},
                                           inclusion) for d in scored}
    agreement = {d["name"]: _agreement(d, values[d["name"]], annotators) for d in scored}

    # Per item: auto scores, human means, and the two as percentile ranks for the disagreement.
    numeric_dims = [d for d in scored if level_of_measurement(d) != "nominal"]
    rows = []
    for k in reviewed:
        item = by_key[k]
        h = {}
        for d in scored:
            got = values[d["name"]].get(k, {})
            if got:
                entry = {"by_annotator": dict(sorted(got.items()))}
                if level_of_measurement(d) != "nominal":
                    entry["mean"] = _round(sum(got.values()) / len(got))
                h[d["name"]] = entry
        norm = []
        for d in numeric_dims:
            if d["name"] in h:
                lo, hi = value_range(d)
                norm.append((h[d["name"]]["mean"] - lo) / (hi - lo))
        rows.append({"id": item["id"], "key": k, "task": item.get("task"), "auto": auto_scores(item),
                     "human": h, "human_overall": _round(sum(norm) / len(norm)) if norm else None,
                     "comments": comments.get(k, []), "prompt": item["prompt"], "prediction": item["prediction"]})

    metrics = sorted({m for r in rows for m in r["auto"]})
    correlation, correlation_n = {}, {}
    for m in metrics:
        correlation[m], correlation_n[m] = {}, {}
        for d in numeric_dims:
            pairs = [(r["auto"][m], r["human"][d["name"]]["mean"]) for r in rows
                     if m in r["auto"] and d["name"] in r["human"]]
            correlation[m][d["name"]] = _round(spearman([p[0] for p in pairs], [p[1] for p in pairs]))
            correlation_n[m][d["name"]] = len(pairs)

    # Machine vs experts: each item's mean metric rank against its expert rank, among reviewed items.
    ranked = [r for r in rows if r["auto"] and r["human_overall"] is not None]
    if len(ranked) >= 2:
        auto_rank = [0.0] * len(ranked)
        for m in metrics:
            idx = [i for i, r in enumerate(ranked) if m in r["auto"]]
            for i, p in zip(idx, percentile_ranks([ranked[i]["auto"][m] for i in idx])):
                auto_rank[i] += p / sum(1 for mm in metrics if mm in ranked[i]["auto"])
        human_rank = percentile_ranks([r["human_overall"] for r in ranked])
        for r, ar, hr in zip(ranked, auto_rank, human_rank):
            r["auto_rank"], r["human_rank"] = _round(ar), _round(hr)
            r["disagreement"] = _round(ar - hr)
    disagreements = sorted((r for r in rows if r.get("disagreement") is not None),
                           key=lambda r: (-abs(r["disagreement"]), str(r["id"])))[:top]

    by_task = {}
    for task in sorted({str(r["task"]) for r in rows}):
        keys = [r["key"] for r in rows if str(r["task"]) == task]
        by_task[task] = {"n": len(keys), "human": {
            d["name"]: _dimension_summary(d, {k: list(values[d["name"]].get(k, {}).values()) for k in keys},
                                          inclusion) for d in scored}}

    report = {
        "run": str(run), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rubric": {k: rubric[k] for k in ("name", "version", "title", "fingerprint")},
        "dimensions": [{"name": d["name"], "type": d["type"], "label": d["label"],
                        "level": level_of_measurement(d), "range": value_range(d)} for d in rubric["dimensions"]],
        "counts": {"items_in_run": len(items), "exported": len(manifest.get("items", [])) or None,
                   "reviewed": len(reviewed), "annotations": len(annotations), "annotators": len(annotators)},
        "annotators": annotators,
        "human": human, "agreement": agreement, "correlation": correlation, "correlation_n": correlation_n,
        "auto": {"summary": auto_summary, "reviewed_mean": {
            m: _round(sum(r["auto"][m] for r in rows if m in r["auto"]) /
                      max(1, sum(1 for r in rows if m in r["auto"]))) for m in metrics}},
        "by_task": by_task,
        "disagreements": [{k: r.get(k) for k in ("id", "task", "auto", "human_overall", "auto_rank", "human_rank",
                                                 "disagreement", "prompt", "prediction", "comments")}
                          for r in disagreements],
        "items": rows,
        "signature": SIGNATURE, "versions": tool_versions(),
    }
    # `evalkit auto` writes its own report.html: keep it beside this one instead of overwriting it.
    html_path, auto_html = run / "report.html", run / "report_auto.html"
    if html_path.is_file() and GENERATOR_TAG not in html_path.read_text(encoding="utf-8", errors="replace")[:4000]:
        os.replace(html_path, auto_html)
    if auto_html.is_file():
        report["auto_report"] = auto_html.name
    write_json(run / "report.json", report)
    write_text(html_path, render_html(report))
    return report
