"""`evalkit auto`: generate (or read) predictions, score them, write the run folder.

The run folder (read by `evalkit compare` and by the expert review, issue 7):

    items.jsonl    one line per item: id, task, prompt, prediction, reference (string or list),
                   and its scores under the metric names bleu, chrf (0-100, sacrebleu's scale),
                   rouge1, rouge2, rougeL (F-measure, 0-1), em, contains (0/1); choice items add
                   answer, choices, extracted (letter or null), correct (true/false), and in
                   loglik mode logprobs {letter: log P}.  ``stats`` holds the per-item
                   sufficient statistics that corpus BLEU/chrF aggregate.
    summary.json   {metric: {score, ci_low, ci_high, n, tasks: {task: {score, ci_low, ci_high, n}},
                   signature}} for bleu, chrf, rouge1, rouge2, rougeL, em, contains, choice_acc,
                   choice_unparsed (whichever were computed)
    report.html    per-task bars, score distributions, worst items (self-contained)
    manifest.json  config, versions, seed, data checksum, model fingerprints, gate results, timings

    >>> from evalkit.auto import run_auto                                  # doctest: +SKIP
    >>> run_auto({"predictions": "preds.jsonl", "out": "run/"})           # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import platform
import re
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from . import __version__
from .choice import LETTERS, extract_choice
from .data import load_items
from .generate import GENERATION_DEFAULTS
from .metrics import MetricResult, bleu, chrf, exact_match, rouge
from .stats import bootstrap_ci

TEXT_METRIC_GROUPS = {"bleu": ("bleu",), "chrf": ("chrf",), "rouge": ("rouge1", "rouge2", "rougeL"),
                      "rouge1": ("rouge1",), "rouge2": ("rouge2",), "rougeL": ("rougeL",),
                      "em": ("em",), "contains": ("contains",), "choice": ("choice_acc", "choice_unparsed")}
SUMMARY_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "em", "contains", "choice_acc", "choice_unparsed")
SHORT_REFERENCE_CHARS = 32   # EM/contains are computed by default when references are this short

DEFAULTS = {"data": None, "predictions": None, "model": None, "adapter": None, "out": "evalkit-out",
            "metrics": None, "gates": [], "bleu_tokenize": None, "rouge_tokenizer": "cjk", "lowercase": False,
            "bootstrap": 1000, "seed": 0, "limit": None, "choice_mode": "generate", "cache": None, "threads": None,
            "generation": dict(GENERATION_DEFAULTS), "progress": True}

_GATE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:@([^<>=!]+?))?\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$")


def parse_gate(text: str) -> dict:
    """'rougeL>=0.30' or 'choice_acc@cmmlu_medicine>0.25' -> {metric, task, op, value}."""
    m = _GATE.match(text or "")
    if not m:
        raise ValueError(f"gate {text!r}: expected METRIC[@TASK] OP NUMBER, e.g. 'rougeL>=0.30'")
    metric, task, op, value = m.groups()
    if metric not in SUMMARY_METRICS:
        raise ValueError(f"gate {text!r}: unknown metric {metric!r} (known: {', '.join(SUMMARY_METRICS)})")
    return {"gate": text.strip(), "metric": metric, "task": task.strip() if task else None, "op": op,
            "value": float(value)}


def check_gates(gates: list[dict], summary: dict) -> list[dict]:
    ops = {">=": np.greater_equal, "<=": np.less_equal, ">": np.greater, "<": np.less,
           "==": np.equal, "!=": np.not_equal}
    results = []
    for g in gates:
        entry = summary.get(g["metric"])
        if entry and g["task"]:
            entry = entry["tasks"].get(g["task"])
        if not entry or entry.get("score") is None:
            results.append({**g, "actual": None, "passed": False, "why": "metric not computed for this run"})
            continue
        actual = entry["score"]
        results.append({**g, "actual": actual, "passed": bool(ops[g["op"]](actual, g["value"]))})
    return results


def config_problems(cfg: dict) -> list[str]:
    problems = []
    unknown = set(cfg) - set(DEFAULTS)
    problems += [f"unknown option {k!r} (known: {', '.join(sorted(DEFAULTS))})" for k in sorted(unknown)]
    if bool(cfg.get("data")) == bool(cfg.get("predictions")):
        problems.append("give exactly one of data (to generate with --model) or predictions (to score)")
    if cfg.get("data") and not cfg.get("model"):
        problems.append("data needs a model to generate with (--model NAME_OR_DIR)")
    for key in ("data", "predictions"):
        if cfg.get(key) and not Path(cfg[key]).is_file():
            problems.append(f"{key}: {cfg[key]} does not exist")
    if cfg.get("adapter") and not (Path(cfg["adapter"]) / "adapter_config.json").is_file():
        problems.append(f"adapter: {cfg['adapter']} is not a PEFT adapter folder (no adapter_config.json)")
    for name in cfg.get("metrics") if isinstance(cfg.get("metrics"), list) else []:
        if str(name) not in TEXT_METRIC_GROUPS:
            problems.append(f"metrics: unknown metric {name!r} (known: {', '.join(TEXT_METRIC_GROUPS)})")
    for g in cfg.get("gates") if isinstance(cfg.get("gates"), list) else []:
        try:
            parse_gate(str(g))
        except ValueError as e:
            problems.append(str(e))
    if cfg.get("choice_mode") not in ("generate", "loglik"):
        problems.append(f"choice_mode must be generate or loglik, got {cfg.get('choice_mode')!r}")
    if cfg.get("choice_mode") == "loglik" and not cfg.get("model"):
        problems.append("choice_mode loglik needs a model")
    if cfg.get("rouge_tokenizer") not in ("cjk", "jieba"):
        problems.append(f"rouge_tokenizer must be cjk or jieba, got {cfg.get('rouge_tokenizer')!r}")
    if cfg.get("bleu_tokenize"):
        from sacrebleu.metrics.bleu import _TOKENIZERS
        if cfg["bleu_tokenize"] not in _TOKENIZERS:
            problems.append(f"bleu_tokenize: unknown sacrebleu tokenizer {cfg['bleu_tokenize']!r}")
    if not isinstance(cfg.get("bootstrap"), int) or cfg["bootstrap"] < 0:
        problems.append("bootstrap must be a non-negative integer (0 turns intervals off)")
    gen = cfg.get("generation") or {}
    if not isinstance(cfg.get("metrics") or [], list):
        problems.append("metrics must be a list (or a comma-separated string) of metric names")
    if not isinstance(cfg.get("gates") or [], list):
        problems.append("gates must be a list of 'METRIC OP NUMBER' strings")
    if not isinstance(gen, dict):
        problems.append("generation must be a mapping")
    else:
        problems += [f"generation.{k}: unknown option (known: {', '.join(GENERATION_DEFAULTS)})"
                     for k in gen if k not in GENERATION_DEFAULTS]
    return problems


def versions() -> dict:
    out = {"python": platform.python_version(), "evalkit": __version__}
    for pkg in ("sacrebleu", "rouge-score", "numpy", "torch", "transformers", "peft"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_metrics(items: list[dict]) -> list[str]:
    """What the data supports: text metrics for items with references, choice for choice items,
    EM/contains when the references are short answers."""
    text = [i for i in items if i["references"] and i["answer"] is None]
    out = []
    if text:
        out += ["bleu", "chrf", "rouge"]
        lengths = sorted(len(r) for i in text for r in i["references"])
        if lengths[len(lengths) // 2] <= SHORT_REFERENCE_CHARS:
            out += ["em", "contains"]
    if any(i["answer"] is not None for i in items):
        out.append("choice")
    return out


def score_items(items: list[dict], metric_names: list[str], cfg: dict) -> dict[str, MetricResult]:
    """Every requested metric over the items it applies to; fills per-item scores into ``items``."""
    wanted = {m for name in metric_names for m in TEXT_METRIC_GROUPS[name]}
    text_rows = [k for k, i in enumerate(items) if i["references"] and i["answer"] is None]
    results: dict[str, tuple[MetricResult, list[int]]] = {}
    if text_rows:
        hyps = [items[k]["prediction"] or "" for k in text_rows]
        refs = [items[k]["references"] for k in text_rows]
        found: dict[str, MetricResult] = {}
        if "bleu" in wanted:
            found["bleu"] = bleu(hyps, refs, tokenize=cfg.get("bleu_tokenize"), lowercase=cfg.get("lowercase", False))
        if "chrf" in wanted:
            found["chrf"] = chrf(hyps, refs, lowercase=cfg.get("lowercase", False))
        if wanted & {"rouge1", "rouge2", "rougeL"}:
            found.update({k: v for k, v in rouge(hyps, refs, cfg.get("rouge_tokenizer", "cjk")).items() if k in wanted})
        if wanted & {"em", "contains"}:
            found.update({k: v for k, v in exact_match(hyps, refs).items() if k in wanted})
        for name, res in found.items():
            results[name] = (res, text_rows)
            for j, k in enumerate(text_rows):
                items[k]["scores"][name] = float(res.item_scores[j])
                if name in ("bleu", "chrf"):
                    items[k]["stats"][name] = [int(x) for x in res.stats[j]]
    choice_rows = [k for k, i in enumerate(items) if i["answer"] is not None]
    if choice_rows and "choice_acc" in wanted:
        correct = np.zeros((len(choice_rows), 1))
        unparsed = np.zeros((len(choice_rows), 1))
        for j, k in enumerate(choice_rows):
            it = items[k]
            if it.get("extracted", "unset") == "unset":   # loglik mode has set it already
                letters = LETTERS[: len(it["choices"])] if it["choices"] else None
                it["extracted"] = extract_choice(it["prediction"], it["choices"], letters)
            it["correct"] = it["extracted"] == it["answer"]
            correct[j, 0], unparsed[j, 0] = it["correct"], it["extracted"] is None
        mode = cfg.get("choice_mode", "generate")
        tail = f"mode:{mode}|agg:mean|n:{len(choice_rows)}|evalkit:{__version__}"
        mean = lambda sums, n: float(sums[0] / n) if n else float("nan")   # noqa: E731
        results["choice_acc"] = (MetricResult("choice_acc", correct, correct[:, 0], mean,
                                              f"choice_acc|extract:last-marker|{tail}" if mode == "generate"
                                              else f"choice_acc|loglik:sum|{tail}"), choice_rows)
        results["choice_unparsed"] = (MetricResult("choice_unparsed", unparsed, unparsed[:, 0], mean,
                                                   f"choice_unparsed|{tail}"), choice_rows)
    return results


def summarize(results: dict, items: list[dict], n_boot: int, seed: int) -> dict:
    summary = {}
    for name in SUMMARY_METRICS:
        if name not in results:
            continue
        res, rows = results[name]
        tasks = [items[k]["task"] for k in rows]
        lo, hi = bootstrap_ci(res.stats, res.score_from_sums, n_boot, seed) if n_boot else (None, None)
        entry = {"score": res.score(), "ci_low": lo, "ci_high": hi, "n": len(rows), "scale": res.scale, "tasks": {}}
        for task in sorted(set(tasks)):
            sel = np.array([t == task for t in tasks])
            sub = res.stats[sel]
            tlo, thi = bootstrap_ci(sub, res.score_from_sums, n_boot, seed) if n_boot else (None, None)
            entry["tasks"][task] = {"score": res.score(np.flatnonzero(sel)), "ci_low": tlo, "ci_high": thi,
                                    "n": int(sel.sum())}
        entry["signature"] = res.signature + (f"|ci:bootstrap-percentile-95|resamples:{n_boot}|seed:{seed}"
                                              if n_boot else "")
        summary[name] = entry
    return summary


def _item_row(it: dict) -> dict:
    row = {"id": it["id"], "task": it["task"], "prompt": it["prompt"], "prediction": it["prediction"] or "",
           "reference": it["references"][0] if len(it["references"]) == 1 else (it["references"] or None)}
    row.update(it["scores"])
    if it["answer"] is not None:
        row.update({"answer": it["answer"], "choices": it["choices"], "extracted": it.get("extracted"),
                    "correct": bool(it.get("correct"))})
        if it.get("logprobs"):
            row["logprobs"] = it["logprobs"]
    if it["stats"]:
        row["stats"] = it["stats"]
    return row


def run_auto(cfg: dict, log=print) -> dict:
    """Run `evalkit auto` with a full config (see DEFAULTS); returns {summary, gates, out, manifest}."""
    cfg = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    if isinstance(cfg.get("generation"), dict):
        cfg["generation"] = {**GENERATION_DEFAULTS, **cfg["generation"]}
    if isinstance(cfg.get("metrics"), str):   # "bleu,rouge" in YAML or on the command line
        cfg["metrics"] = [m.strip() for m in cfg["metrics"].split(",") if m.strip()]
    if isinstance(cfg.get("gates"), str):
        cfg["gates"] = [cfg["gates"]]
    from curate.config import ConfigError
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(problems)
    gates = [parse_gate(g) for g in cfg["gates"] or []]
    out = Path(cfg["out"])
    t0 = time.time()
    source = cfg["predictions"] or cfg["data"]
    items = load_items(source, need_prediction=bool(cfg["predictions"]), limit=cfg["limit"])
    for it in items:
        it["scores"], it["stats"] = {}, {}
    metric_names = cfg["metrics"] or default_metrics(items)
    manifest = {"command": "evalkit auto", "argv": sys.argv[1:], "config": cfg, "versions": versions(),
                "seed": cfg["seed"], "data": {"path": str(source), "sha256": _sha256(source), "items": len(items)},
                "metrics": metric_names}
    if cfg["data"]:
        manifest["generation"] = _model_outputs(items, cfg, log)
    t1 = time.time()
    results = score_items(items, metric_names, cfg)
    summary = summarize(results, items, cfg["bootstrap"], cfg["seed"])
    t2 = time.time()
    gate_results = check_gates(gates, summary)
    manifest.update({"gates": gate_results, "seconds": {"load_and_generate": round(t1 - t0, 3),
                                                         "score": round(t2 - t1, 3)}})
    rows = write_run_folder(out, items, summary, manifest, f"evalkit auto: {Path(source).name}", gate_results)
    return {"summary": summary, "gates": gate_results, "out": out, "manifest": manifest, "items": rows}


def write_run_folder(out: Path, items: list[dict], summary: dict, manifest: dict, title: str,
                     gates: list[dict] | None = None, extra: dict | None = None) -> list[dict]:
    """items.jsonl, summary.json, report.html, manifest.json (and ``extra`` name -> JSON), atomically."""
    from curate.writing import write_json, write_jsonl, write_text
    from .report import render_html
    rows = [_item_row(it) for it in items]
    write_jsonl(out / "items.jsonl", rows)
    write_json(out / "summary.json", summary)
    for name, obj in (extra or {}).items():
        write_json(out / name, obj)
    write_text(out / "report.html", render_html(summary, rows, title=title, gates=gates))
    write_json(out / "manifest.json", manifest)
    return rows


def _model_outputs(items: list[dict], cfg: dict, log) -> dict:
    """Predictions for every item from the model (cached), and option log-likelihoods in loglik mode."""
    from trainplug.models import cache_dir
    from .generate import GenerationCache, PrefixScorer, generate, load_model, render_prompt
    lm = load_model(cfg["model"], cfg["adapter"], cfg["threads"])
    info = {**lm.fingerprint, "params": cfg["generation"]}
    cache_path = None if cfg["cache"] == "off" else Path(cfg["cache"] or cache_dir() / "evalkit" / "generations.sqlite")
    cache = GenerationCache(cache_path)
    try:
        t = time.time()
        todo = [it for it in items if not (cfg["choice_mode"] == "loglik" and it["answer"] is not None)]
        texts, counts = generate(lm, [it["messages"] for it in todo], cfg["generation"], cache, cfg["progress"])
        for it, text in zip(todo, texts):
            it["prediction"] = text
        info.update(counts, cache=str(cache_path) if cache_path else None, generate_seconds=round(time.time() - t, 2))
        log(f"generated {counts['generated']} predictions, {counts['cached']} from the cache")
    finally:
        cache.close()
    scored = [it for it in items if cfg["choice_mode"] == "loglik" and it["answer"] is not None]
    if scored:
        scorer = PrefixScorer(lm)
        for it in scored:
            letters = LETTERS[: len(it["choices"])] if it["choices"] else "ABCD"
            ctx = render_prompt(lm, it["messages"], cfg["generation"]["chat_template"])
            lps = scorer.logprobs(ctx, list(letters))
            it["logprobs"] = dict(zip(letters, lps))
            it["extracted"] = letters[int(np.argmax(lps))]
            it["prediction"] = it["extracted"]
        info["loglik_items"] = len(scored)
    return info
