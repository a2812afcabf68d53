"""`curate run` benchmark: the whole pipeline except dedup (which has its own, bench/dedup.py),
against the naive recipe (the anchor) in the same run.

    .venv/bin/python bench/pipeline.py                  # real corpora + 20k subset, with the anchor
    .venv/bin/python bench/pipeline.py --big 1000000    # plus 1M records of make_dedup_corpus.py

Workloads: the real corpora in ../shared/data (GB18030 medical CSV, alpaca_zh, alpaca_en as
general data) and make_dedup_corpus.py output (plain documents, 70% Chinese), generated once
into bench/out/.  Each recipe runs in its own process; wall time and the peak RSS of the whole
process tree (polled every 0.1 s with psutil, summed over the runner and its workers) are
measured from outside; each recipe also reports getrusage for itself and its largest worker.

The anchor is the recipe one writes first: one process, a plain loop over curate's own reader,
the same record steps called record by record, everything kept in a list, one Parquet write.
It shows what the runner's batching, worker processes and streaming buy.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SHARED = Path(os.environ.get("SFTKIT_SHARED", ROOT.parent / "shared"))
MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"


def real_config(out: Path) -> dict:
    d = SHARED / "data"
    return {"inputs": [{"path": str(d / MEDICAL), "map": "user=ask,assistant=answer,task=department"},
                       {"path": str(d / "alpaca_zh")},
                       {"path": str(d / "alpaca_en"), "role": "general"}],
            "out": str(out)}


def corpus_of(n: int) -> Path:
    """make_dedup_corpus.py output, shared with bench/dedup.py (same name, same seed)."""
    path = OUT / f"dedup-{n}.jsonl"
    if not path.exists():
        big = OUT / "dedup-1000000.jsonl"
        if big.exists() and n < 1_000_000:   # a prefix of the 1M corpus is the same kind of data
            with open(big, encoding="utf-8") as src, open(path, "w", encoding="utf-8") as dst:
                for _, line in zip(range(n), src):
                    dst.write(line)
        else:
            subprocess.run([sys.executable, str(SHARED / "bench/make_dedup_corpus.py"), str(n), str(path), "--seed", "0"],
                           check=True)
    return path


# -- the recipes, each run as `python bench/pipeline.py _run RECIPE CONFIG.json` ----------------

def loaded_config(cfg_path: str) -> dict:
    """The config through the same loader as `curate run CONFIG --skip dedup`."""
    import yaml

    from curate.config import load_config
    yaml_path = Path(cfg_path).with_suffix(".yaml")
    yaml_path.write_text(yaml.safe_dump(json.loads(Path(cfg_path).read_text()), allow_unicode=True), encoding="utf-8")
    return load_config(str(yaml_path), skip="dedup")


def own_rss() -> dict:
    """Peak RSS of this process and of its largest (waited-for) child, from getrusage (KiB on Linux)."""
    gb = 2**30 / 1024
    return {"self_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / gb, 3),
            "largest_worker_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / gb, 3)}


def curate_recipe(cfg_path: str) -> None:
    from curate.pipeline import run
    cfg = loaded_config(cfg_path)
    result = run(cfg, progress=False, log=lambda m: None)
    print(json.dumps({"read": result.report["totals"]["read"], "kept": result.report["totals"]["kept"],
                      "steps": list(cfg["steps"]), "workers": cfg["workers"] or os.cpu_count(), **own_rss()}))


def anchor_recipe(cfg_path: str) -> None:
    import polars as pl

    from curate.pipeline import STEP_CLASSES, sources_of
    from curate.reading import read_source
    from curate.schema import to_frame
    from curate.step import Context, Drop, RecordStep
    loaded = loaded_config(cfg_path)
    general = frozenset(s.path for s, role in sources_of(loaded) if role == "general")
    ctx = Context(seed=loaded["seed"], general_sources=general, show_progress=False)
    # Table steps (balance, mix) are no-ops without options; the anchor runs the record steps.
    steps = [STEP_CLASSES[n](o, ctx) for n, o in loaded["steps"].items() if issubclass(STEP_CLASSES[n], RecordStep)]
    kept, read = [], 0
    for spec, _role in sources_of(loaded):
        for rec, _rej in read_source(spec):
            read += 1
            if rec is None:
                continue
            for step in steps:
                rec = step.process(rec)
                if isinstance(rec, Drop):
                    break
            else:
                kept.append(rec)
    Path(loaded["out"]).mkdir(parents=True, exist_ok=True)
    to_frame(kept).write_parquet(Path(loaded["out"]) / "curated.parquet")
    print(json.dumps({"read": read, "kept": len(kept), "steps": [s.name for s in steps], "workers": 1, **own_rss()}))


# -- measuring ------------------------------------------------------------------------------

def measure(cmd: list[str], label: str) -> dict:
    """Run ``cmd``: wall seconds and the peak RSS of its whole process tree (polled every 0.1 s)."""
    t0, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    seconds = time.time() - t0
    if proc.returncode:
        raise RuntimeError(f"{label} failed:\n{err[-3000:]}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)   # the tree's CPU time, workers included
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_gb": round(peak / 2**30, 3),
            "load_avg": round((load0 + os.getloadavg()[0]) / 2, 1), **json.loads(out.strip().splitlines()[-1])}


def run_recipe(recipe: str, name: str, cfg: dict, workers: int | None = None) -> dict:
    out = OUT / "pipeline" / f"{name}-{recipe}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {**cfg, "out": str(out), **({"workers": workers} if workers else {})}
    cfg_path = OUT / "pipeline" / f"{name}-{recipe}.json"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(json.dumps(cfg, ensure_ascii=False))
    print(f"... {recipe} on {name}", flush=True)
    row = {"workload": name, "recipe": recipe, **measure([sys.executable, __file__, "_run", recipe, str(cfg_path)], recipe)}
    row["records_per_s"] = round(row["read"] / row["seconds"])
    row["cpu_ms_per_1k"] = round(1e6 * row["cpu_seconds"] / row["read"])   # load-independent cost
    print(json.dumps(row), flush=True)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        sys.path.insert(0, str(ROOT))
        {"curate": curate_recipe, "anchor": anchor_recipe}[sys.argv[2]](sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", type=int, default=20_000, help="records of the generated corpus for curate vs anchor")
    ap.add_argument("--big", type=int, default=0, help="also run curate alone on this many generated records")
    ap.add_argument("--workers", type=int, default=0, help="curate workers (default: all cores)")
    ap.add_argument("--skip-real", action="store_true")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    env = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {round(psutil.virtual_memory().total / 2**30)} GB",
           "date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_at_start": os.getloadavg()[0]}
    if not a.skip_real and (SHARED / "data").is_dir():
        for recipe in ("anchor", "curate"):
            rows.append(run_recipe(recipe, "real-corpora", real_config(Path()), a.workers))
    sub = {"inputs": [str(corpus_of(a.subset))]}
    for recipe in ("anchor", "curate"):
        rows.append(run_recipe(recipe, f"generated-{a.subset}", sub, a.workers))
    if a.big:
        rows.append(run_recipe("curate", f"generated-{a.big}", {"inputs": [str(corpus_of(a.big))]}, a.workers))
    env["load_avg_at_end"] = os.getloadavg()[0]
    by = {(r["workload"], r["recipe"]): r for r in rows}
    ratios = {w: {"wall": round(by[(w, "curate")]["records_per_s"] / by[(w, "anchor")]["records_per_s"], 2),
                  "cpu": round(by[(w, "anchor")]["cpu_ms_per_1k"] / by[(w, "curate")]["cpu_ms_per_1k"], 2)}
              for w, rcp in by if rcp == "anchor" and (w, "curate") in by}
    result = {"env": env, "rows": rows, "speedup_vs_anchor": ratios}
    (OUT / "pipeline-results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print("\n| workload | recipe | records | wall s | records/s | CPU s (tree) | CPU ms / 1k records | load avg | "
          "peak RSS, tree polled (GB) | getrusage: runner + workers x largest worker (GB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bound = round(r["self_rss_gb"] + (r["workers"] if r["workers"] > 1 else 0) * r["largest_worker_rss_gb"], 2)
        print(f"| {r['workload']} | {r['recipe']} | {r['read']:,} | {r['seconds']} | {r['records_per_s']:,} | "
              f"{r['cpu_seconds']} | {r['cpu_ms_per_1k']:,} | {r['load_avg']} | {r['peak_rss_gb']} | {bound} |")
    print(f"\nspeed-up of curate over the anchor: {ratios}; steps: {rows[-1]['steps']}; {env}")


if __name__ == "__main__":
    main()
