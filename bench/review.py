"""Benchmark: expert-review export and import of 1,000 items against a real local Label Studio,
against the naive one-task-per-request recipe in the same run; and agreement statistics against the
krippendorff package and published values.

    .venv/bin/python bench/review.py [--items 1000] [--out bench/out/review.json]

Needs `make review-deps` (.venv-ls).  Items: real Chinese patient questions from
../shared/data/medical_dialogue (the "model answer" is another doctor's answer in the same
department; BLEU/chrF by sacrebleu), or the test fixture items repeated when ../shared is absent.

Timed, ours:  export_run (files + project + key listing + bulk import in batches of 500)
              import_run (one JSON export download, parse, select, write).
Timed, naive: one projects.import_tasks call per task (each with its prediction);
              tasks.list + one annotations.list call per task.
Not timed: starting the server, and a copy of the project with 2 annotations per task by two
users (bulk-imported with completed_by) that both imports then read.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from evalkit.review.client import LabelStudioClient  # noqa: E402
from evalkit.review.export import export_run  # noqa: E402
from evalkit.review.importing import import_run  # noqa: E402
from evalkit.review.localserver import TEMPLATE_INFO, LocalLabelStudio, make_template  # noqa: E402
from evalkit.review.stats import krippendorff_alpha  # noqa: E402

RUBRIC = ROOT / "rubrics" / "medical.yaml"
SHARED_CSV = ROOT.parent / "shared" / "data" / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"


def make_items(n: int, seed: int = 0) -> tuple[list[dict], str]:
    import sacrebleu
    rng = random.Random(seed)
    if SHARED_CSV.is_file():
        with open(SHARED_CSV, encoding="gb18030", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["ask"].strip() and r["answer"].strip()]
        rng.shuffle(rows)
        by_dept: dict[str, list] = {}
        for r in rows:
            by_dept.setdefault(r["department"], []).append(r)
        items = []
        for i, r in enumerate(rows[:n]):
            other = rng.choice(by_dept[r["department"]])["answer"]
            items.append({"id": f"md-{i:05d}", "task": r["department"], "prompt": r["ask"], "prediction": other,
                          "reference": r["answer"]})
        source = f"{SHARED_CSV.name} (real questions; prediction = another answer of the same department)"
    else:
        from review_data import run_items
        base = run_items()
        items = [{**base[i % len(base)], "id": f"{base[i % len(base)]['id']}-{i}"} for i in range(n)]
        source = "tests/review_data.py items repeated (../shared absent)"
    for it in items:
        if "bleu" not in it:
            it["bleu"] = round(sacrebleu.sentence_bleu(it["prediction"], [it["reference"]], tokenize="zh").score, 4)
            it["chrf"] = round(sacrebleu.sentence_chrf(it["prediction"], [it["reference"]]).score, 4)
            it["em"] = float(it["prediction"].strip() == it["reference"].strip())
    return items, source


def ensure_template() -> Path:
    from ls_server import _ls_version
    template = ROOT / ".cache" / "label-studio" / f"template-{_ls_version()}"
    if not (template / TEMPLATE_INFO).is_file():
        print("migrating a Label Studio template (once) ...", flush=True)
        make_template(template)
    return template


def annotated_copy(sdk, label_config: str, tasks: list[dict], emails: list[str], seed: int = 0) -> int:
    """Setup, not timed: a project holding the same tasks, each rated by both users (accuracy near a
    per-task truth, safety from it), bulk-imported with ``completed_by`` naming each annotator."""
    rng = random.Random(seed)
    annotated = []
    for t in tasks:
        truth, anns = rng.randint(1, 5), []
        for email in emails:
            acc = min(5, max(1, truth + rng.choice([-1, 0, 0, 1])))
            anns.append({"completed_by": {"email": email}, "result": [
                {"from_name": "accuracy", "to_name": "answer", "type": "rating", "value": {"rating": acc}},
                {"from_name": "safety", "to_name": "answer", "type": "choices",
                 "value": {"choices": ["safe" if acc >= 3 else "caution"]}}]})
        annotated.append({**t, "annotations": anns})
    pid = sdk.projects.create(title="bench: annotated", label_config=label_config).id
    for start in range(0, len(annotated), 500):
        sdk.projects.import_tasks(pid, request=annotated[start:start + 500])
    return pid


def naive_export(sdk, project_id: int, tasks: list[dict]) -> None:
    for t in tasks:
        sdk.projects.import_tasks(project_id, request=[t])


def naive_import(sdk, project_id: int) -> int:
    n = 0
    for task in sdk.tasks.list(project=project_id, page_size=100):
        n += len(sdk.annotations.list(id=task.id))
    return n


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C, with its published alphas.
PAPER = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
         [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
PUBLISHED = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849, "ratio": 0.797}


def agreement_check(seed: int = 0) -> dict:
    import krippendorff
    out = {"paper": {}, "random_max_abs_diff": 0.0}
    arr = np.array([[np.nan if v is None else v for v in r] for r in PAPER], dtype=float)
    for level, published in PUBLISHED.items():
        ours = krippendorff_alpha(PAPER, level)
        ref = krippendorff.alpha(reliability_data=arr, level_of_measurement=level)
        out["paper"][level] = {"ours": round(ours, 6), "krippendorff_pkg": round(ref, 6), "published": published}
    rng = np.random.default_rng(seed)
    for _ in range(50):
        data = rng.integers(1, 6, size=(rng.integers(2, 6), rng.integers(10, 200))).astype(float)
        data[rng.random(data.shape) < 0.3] = np.nan
        rows = [[None if np.isnan(v) else int(v) for v in r] for r in data]
        for level in ("nominal", "ordinal", "interval", "ratio"):
            ours, ref = krippendorff_alpha(rows, level), krippendorff.alpha(reliability_data=data,
                                                                             level_of_measurement=level)
            if ours is not None:
                out["random_max_abs_diff"] = max(out["random_max_abs_diff"], abs(ours - ref))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "review.json"))
    args = ap.parse_args()
    from label_studio_sdk import LabelStudio

    items, source = make_items(args.items)
    template = ensure_template()
    work = Path(tempfile.mkdtemp(prefix="bench-review-"))
    import os
    results: dict = {"items": len(items), "source": source, "load_average_at_start": os.getloadavg()}
    with LocalLabelStudio.from_template(template, work / "ls") as ls:
        (owner, key), (_, key2) = list(ls.users.items())
        sdk = LabelStudio(base_url=ls.url, api_key=key)
        run = work / "run"
        run.mkdir()
        with open(run / "items.jsonl", "w", encoding="utf-8") as f:
            for it in items:
                f.write(json.dumps(it, ensure_ascii=False) + "\n")

        t = time.perf_counter()
        m = export_run(run, RUBRIC, client=LabelStudioClient(ls.url, key), title="bench: ours")
        results["export_ours_s"] = time.perf_counter() - t
        pid = m["project"]["id"]
        tasks = json.loads((run / "review" / "tasks.json").read_text())
        t = time.perf_counter()
        m2 = export_run(run, RUBRIC, client=LabelStudioClient(ls.url, key))
        results["export_rerun_ours_s"] = time.perf_counter() - t
        assert m2["project"]["added"] == 0 and m2["project"]["in_project"] == len(items)

        naive_pid = sdk.projects.create(title="bench: naive", label_config=(run / "review" / "label_config.xml").read_text()).id
        t = time.perf_counter()
        naive_export(sdk, naive_pid, tasks)
        results["export_naive_s"] = time.perf_counter() - t

        t = time.perf_counter()
        annotated_pid = annotated_copy(sdk, (run / "review" / "label_config.xml").read_text(), tasks, list(ls.users))
        results["annotate_setup_s"] = time.perf_counter() - t

        t = time.perf_counter()
        summary = import_run(run, client=LabelStudioClient(ls.url, key), project_id=annotated_pid)
        results["import_ours_s"] = time.perf_counter() - t
        results["import_kept"] = summary["kept"]
        t = time.perf_counter()
        results["import_naive_annotations"] = naive_import(sdk, annotated_pid)
        results["import_naive_s"] = time.perf_counter() - t

    results["export_plus_import_ours_s"] = results["export_ours_s"] + results["import_ours_s"]
    results["export_plus_import_naive_s"] = results["export_naive_s"] + results["import_naive_s"]
    results["speedup"] = results["export_plus_import_naive_s"] / results["export_plus_import_ours_s"]
    results["load_average_at_end"] = os.getloadavg()
    results["agreement"] = agreement_check()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"\nexport+import of {len(items)} items: ours {results['export_plus_import_ours_s']:.1f} s "
          f"(export {results['export_ours_s']:.1f} + import {results['import_ours_s']:.1f}), naive "
          f"{results['export_plus_import_naive_s']:.1f} s (export {results['export_naive_s']:.1f} + import "
          f"{results['import_naive_s']:.1f}); ratio {results['speedup']:.1f}x; goal <= 30 s: "
          f"{'met' if results['export_plus_import_ours_s'] <= 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
