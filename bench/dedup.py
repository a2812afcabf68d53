"""Near-dedup benchmark: our engine against the plain datasketch recipe (the anchor), in the same
run, on make_dedup_corpus.py output, each scored with score_dedup.py.

    .venv/bin/python bench/dedup.py                       # 100k: anchor, ours (engine, CLI), datatrove if installed
    .venv/bin/python bench/dedup.py --big 1000000          # plus 1M docs: ours (engine and `curate dedup`)
    .venv/bin/python bench/dedup.py --recipes ours --big 1000000 --big-recipes anchor,ours   # the ratio at 1M
    .venv/bin/python bench/dedup.py --recipes anchor,ours  # just the ratio (ours: median of --repeat 3)

Every recipe runs in its own process; wall time, CPU time (user + system: with the load average
it shows how much of the 2 cores a recipe got) and peak RSS (the whole process tree, polled) are
measured from outside.  The anchor is the recipe users write first: character 5-grams of the
raw text, ``MinHash.bulk`` with 128 permutations, ``MinHashLSH(threshold=0.7)``, query then
insert.  datatrove (a peer, default MinhashDedup settings) runs from a separate venv given by
``--datatrove-python`` because it is not a dependency of this project.
"""
from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SHARED_BENCH = Path(os.environ.get("SFTKIT_SHARED", ROOT.parent / "shared")) / "bench"


# -- the recipes, each run as `python bench/dedup.py _run RECIPE CORPUS KEPT` -----------------

def anchor(corpus: str, kept_path: str) -> None:
    from datasketch import MinHash, MinHashLSH
    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    with open(corpus, encoding="utf-8") as f, open(kept_path, "w") as out:
        batch = []

        def flush():
            grams = [[t[i:i + 5].encode("utf-8") for i in range(max(1, len(t) - 4))] for _, t in batch]
            for (rid, _), m in zip(batch, MinHash.bulk(grams, num_perm=128)):
                if not lsh.query(m):
                    lsh.insert(rid, m)
                    out.write(rid + "\n")
            batch.clear()

        for line in f:
            rec = json.loads(line)
            batch.append((rec["id"], rec["text"]))
            if len(batch) == 1000:
                flush()
        flush()


def ours(corpus: str, kept_path: str) -> None:
    """The engine straight over the JSONL (no pipeline): read with polars, stream in batches."""
    import polars as pl

    from curate.dedup.engine import Engine
    from curate.dedup.sketch import Settings
    frame = pl.read_ndjson(corpus, schema={"id": pl.Utf8, "text": pl.Utf8})
    ids = frame["id"]
    with tempfile.TemporaryDirectory(dir=OUT) as work:
        result = Engine(Settings(), work, workers=os.cpu_count() or 2).run(frame.iter_slices(5000))
    gone = {d.id for d in result.drops}
    Path(kept_path).write_text("".join(i + "\n" for i in ids.to_list() if i not in gone))
    print(json.dumps(result.report["seconds"]))


def curate_cli(corpus: str, kept_path: str) -> None:
    import polars as pl
    out = Path(kept_path).with_suffix(".curate-out")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([str(ROOT / ".venv" / "bin" / "curate"), "dedup", "--input", corpus, "--out", str(out),
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    ids = pl.read_parquet(out / "curated.parquet", columns=["id"])["id"].to_list()
    Path(kept_path).write_text("".join(i + "\n" for i in ids))
    shutil.rmtree(out, ignore_errors=True)


DATATROVE = r'''
import json, os, sys, glob, shutil
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
corpus, kept_path, work = sys.argv[1:4]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(f"{work}/in")
lines = open(corpus, encoding="utf-8").readlines()
shards = 4
for s in range(shards):
    with open(f"{work}/in/part{s}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(lines[s::shards])
cfg = MinhashConfig()
reader = lambda: JsonlReader(f"{work}/in", id_key="id", text_key="text")
LocalPipelineExecutor(pipeline=[reader(), MinhashDedupSignature(output_folder=f"{work}/sigs", config=cfg)],
                      tasks=shards, workers=2, logging_dir=f"{work}/logs/1").run()
LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets",
                                                    config=cfg)],
                      tasks=cfg.num_buckets, workers=2, logging_dir=f"{work}/logs/2").run()
LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove",
                                                    config=cfg)], tasks=1, logging_dir=f"{work}/logs/3").run()
LocalPipelineExecutor(pipeline=[reader(), MinhashDedupFilter(input_folder=f"{work}/remove"),
                                JsonlWriter(f"{work}/kept", compression=None)],
                      tasks=shards, workers=2, logging_dir=f"{work}/logs/4").run()
with open(kept_path, "w") as out:
    for p in glob.glob(f"{work}/kept/*.jsonl"):
        for line in open(p, encoding="utf-8"):
            out.write(json.loads(line)["id"] + "\n")
shutil.rmtree(work, ignore_errors=True)
'''


# -- measuring ----------------------------------------------------------------------------------

def measure(cmd: list[str], label: str) -> dict:
    """Run ``cmd``: wall seconds, CPU seconds (user + system, its waited-for children included),
    peak RSS of its whole process tree (polled every 0.1 s by a thread while this one waits for
    the exit, so the end is seen at once), load average before and after."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        peak, done = [0], threading.Event()

        def poll():
            root = psutil.Process(proc.pid)
            while not done.wait(0.1):
                try:
                    peak[0] = max(peak[0], sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
                except psutil.Error:
                    pass

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{label} failed:\n{err.read()[-3000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "cores_used": round(cpu / wall, 2),
                "peak_rss_gb": round(peak[0] / 2**30, 2), "load_before": round(load_before, 2),
                "load_after": round(os.getloadavg()[0], 2), "stdout": out.read().strip()[-500:]}


def score(corpus: Path, kept: Path) -> dict:
    res = subprocess.run([sys.executable, str(SHARED_BENCH / "score_dedup.py"), str(corpus), str(kept)],
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout)


def corpus_of(n: int) -> Path:
    path = OUT / f"dedup-{n}.jsonl"
    if not path.exists():
        subprocess.run([sys.executable, str(SHARED_BENCH / "make_dedup_corpus.py"), str(n), str(path), "--seed", "0"],
                       check=True)
    return path


def run_recipe(name: str, corpus: Path, python: str | None = None) -> dict:
    kept = OUT / f"{corpus.stem}.{name}.kept"
    if name == "datatrove":
        cmd = [python, "-c", DATATROVE, str(corpus), str(kept), str(OUT / "datatrove-work")]
    else:
        cmd = [sys.executable, __file__, "_run", name, str(corpus), str(kept)]
    print(f"... {name} on {corpus.name}", flush=True)
    m = measure(cmd, name)
    docs = sum(1 for _ in open(corpus, encoding="utf-8"))
    row = {"recipe": name, "docs": docs, **m, "docs_per_s": round(docs / m["seconds"]), **score(corpus, kept)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        sys.path.insert(0, str(ROOT))
        # Every recipe's process exits without the interpreter's last garbage-collector walk, the
        # anchor's too, as in the runs recorded before (numba's typing objects made that walk cost
        # 0.2-0.35 s; without numba it costs ours nothing measurable, BENCHMARKS.md session 4).
        atexit.register(gc.freeze)
        {"anchor": anchor, "ours": ours, "curate": curate_cli}[sys.argv[2]](sys.argv[3], sys.argv[4])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--big", type=int, default=0, help="also run on a corpus this big (e.g. 1000000)")
    ap.add_argument("--big-recipes", default="ours,curate",
                    help="which to run on the --big corpus, once each (add anchor for the ratio there: ~6 min at 1M)")
    ap.add_argument("--datatrove-python", default="/tmp/dt-venv/bin/python")
    ap.add_argument("--recipes", default="anchor,ours,curate,datatrove", help="which to run on the --docs corpus")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of ours and curate on the --docs corpus; the median is reported (a 2 s run "
                         "on a shared box varies by +-10%%; the 40 s anchor runs once)")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    small = corpus_of(a.docs)
    rows, wanted = [], a.recipes.split(",")
    for name in ("anchor", "ours", "curate"):
        if name in wanted:
            tries = [run_recipe(name, small) for _ in range(1 if name == "anchor" else a.repeat)]
            best = sorted(tries, key=lambda r: r["seconds"])[len(tries) // 2]      # the median run
            rows.append({**best, "runs_seconds": [r["seconds"] for r in tries]})
    if "datatrove" in wanted and a.datatrove_python and Path(a.datatrove_python).exists():
        rows.append(run_recipe("datatrove", small, a.datatrove_python))
    if a.big:
        big = corpus_of(a.big)
        for name in a.big_recipes.split(","):
            rows.append(run_recipe(name, big))
    anchor_rate = {r["docs"]: r["docs_per_s"] for r in rows if r["recipe"] == "anchor"}
    print("\n| recipe | docs | s | docs/s | x anchor | CPU s | load | peak RSS GB | precision | recall | F1 | lost clusters |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['docs_per_s'] / anchor_rate[r['docs']]:.1f}" if r["docs"] in anchor_rate else "-"
        print(f"| {r['recipe']} | {r['docs']:,} | {r['seconds']} | {r['docs_per_s']:,} | {ratio} | {r['cpu_seconds']} | "
              f"{r['load_before']}-{r['load_after']} | {r['peak_rss_gb']} | "
              f"{r['precision']} | {r['recall']} | {r['f1']} | {r['lost_clusters']} |")
    (OUT / f"dedup-results-{time.strftime('%H%M')}.json").write_text(json.dumps({"machine": f"{os.cpu_count()} cores",
                                                        "date": time.strftime("%Y-%m-%d %H:%M"),
                                                        "load_avg_at_end": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
