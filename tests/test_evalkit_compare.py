"""`evalkit compare`: a real improvement is significant, a run against itself is not."""
from __future__ import annotations

import csv
import json
import random

import pytest
from click.testing import CliRunner

from evalkit.cli import main
from evalkit.compare import compare_runs


@pytest.fixture(scope="module")
def two_runs(shared_data, tmp_path_factory):
    path = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(path, encoding="gb18030", errors="replace", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["answer"].strip()][:80]
    rng = random.Random(1)
    base = tmp_path_factory.mktemp("cmp")
    runs = {}
    for name in ("a", "b"):
        preds = base / f"{name}.jsonl"
        with open(preds, "w", encoding="utf-8") as f:
            for i, r in enumerate(rows):
                other = rows[(i + 13) % len(rows)]["answer"]
                # B answers 60% of the items with most of the reference; A never does
                good = name == "b" and rng.random() < 0.6
                pred = r["answer"][: int(len(r["answer"]) * 0.8)] if good else other
                f.write(json.dumps({"id": f"q{i}", "task": "内科" if i % 2 else "外科", "prompt": r["ask"],
                                    "prediction": pred, "reference": r["answer"]}, ensure_ascii=False) + "\n")
            f.write(json.dumps({"id": "c1", "task": "choice", "prompt": "?", "prediction": "答案：A", "answer": "A"}) + "\n")
        runs[name] = base / f"run_{name}"
        res = CliRunner().invoke(main, ["auto", "--predictions", str(preds), "--out", str(runs[name]), "--bootstrap", "0"])
        assert res.exit_code == 0, res.output
    return runs


def test_improvement_is_significant_and_self_comparison_is_not(two_runs):
    res = compare_runs(two_runs["a"], two_runs["b"], trials=500)
    assert res["items_common"] == 81
    for metric in ("bleu", "chrf", "rouge1", "rouge2", "rougeL"):
        t = res["metrics"][metric]["all"]
        assert t["diff"] > 0 and t["ci_low"] > 0 and t["p_value"] < 0.01, metric
        assert set(res["metrics"][metric]["tasks"]) == {"内科", "外科"}
    # corpus BLEU differences are recomputed from stored statistics: they match the summaries
    sa = json.loads((two_runs["a"] / "summary.json").read_text())
    sb = json.loads((two_runs["b"] / "summary.json").read_text())
    assert res["metrics"]["bleu"]["all"]["diff"] == pytest.approx(sb["bleu"]["score"] - sa["bleu"]["score"])
    assert res["metrics"]["rougeL"]["changed_most"][0]["diff"] > 0.3
    same = compare_runs(two_runs["a"], two_runs["a"], trials=200)
    assert all(e["all"]["diff"] == 0 and e["all"]["p_value"] == 1.0 for e in same["metrics"].values())


def test_cli_prints_a_table_and_writes_json(two_runs, tmp_path):
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(main, ["compare", str(two_runs["a"]), str(two_runs["b"]), "--trials", "200",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "rougeL" in res.output and "changed most (rougeL)" in res.output
    assert json.loads(out.read_text())["metrics"]["choice_acc"]["all"]["diff"] == 0
    res = CliRunner().invoke(main, ["compare", str(two_runs["a"]), str(tmp_path)])
    assert res.exit_code != 0 and "no items.jsonl" in res.output
