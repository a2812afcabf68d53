"""The offline review path (no server): export writes Label Studio import JSON + XML, import reads a
Label Studio export file (JSON or JSON_MIN), report joins both; sampling; bad input; a server that
refuses connections (a real closed port)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from click.testing import CliRunner

from evalkit.cli import main
from evalkit.review.export import item_key
from evalkit.review.localserver import free_port
from evalkit.review.sampling import allocate, sample_items
from evalkit.rubric import label_config, load_rubric
from review_data import run_items, write_run

ROOT = Path(__file__).resolve().parent.parent
MEDICAL = ROOT / "rubrics" / "medical.yaml"


def _export(run, *args):
    res = CliRunner().invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), *args])
    assert res.exit_code == 0, res.output
    return res


def test_offline_export_writes_import_json_and_xml(tmp_path):
    run = write_run(tmp_path / "run")
    res = _export(run)
    assert "14 of 14 items for review (cmmlu_medicine 4, general_en 2, medical_qa 8)" in res.output
    review = run / "review"
    tasks = json.loads((review / "tasks.json").read_text())
    assert len(tasks) == 14
    items = {i["id"]: i for i in run_items()}
    for t in tasks:
        item = items[t["data"]["item_id"]]
        assert t["data"]["key"] == item_key(item)
        assert t["data"]["prompt"] == item["prompt"] and t["data"]["prediction"] == item["prediction"]
        pred = t["predictions"][0]
        assert pred["model_version"] == "evalkit-auto" and 0 <= pred["score"] <= 1
        assert pred["result"][0]["from_name"] == "auto_scores"
    med3 = next(t for t in tasks if t["data"]["item_id"] == "med-003")
    assert med3["data"]["auto_bleu"] == items["med-003"]["bleu"] and "BLEU 1.7" in med3["data"]["auto_scores"]
    choice = next(t for t in tasks if t["data"]["item_id"] == "cmmlu-003")
    assert "Extracted A" in choice["data"]["auto_scores"] and choice["data"]["auto_correct"] == 0.0
    assert (review / "label_config.xml").read_text().strip() == label_config(load_rubric(MEDICAL)).strip()
    manifest = json.loads((review / "export.json").read_text())
    assert manifest["project"] is None and manifest["exported"] == 14

    # A rerun writes the same tasks; a changed answer is a new item (new key), not the old one's ratings.
    before = (review / "tasks.json").read_text()
    _export(run)
    assert (review / "tasks.json").read_text() == before
    changed = run_items()
    changed[0]["prediction"] += "（已更新）"
    assert item_key(changed[0]) != item_key(run_items()[0]) and item_key(changed[1]) == item_key(run_items()[1])


def test_sampling_is_stratified_and_leans_to_low_and_disputed():
    items = run_items()
    assert allocate({"a": 8, "b": 4, "c": 2}, 5) == {"a": 2, "b": 2, "c": 1}
    assert sum(allocate({"a": 8, "b": 4, "c": 2}, 11).values()) == 11
    assert allocate({"a": 8, "b": 4, "c": 2}, 99) == {"a": 8, "b": 4, "c": 2}

    picked = sample_items(items, 7, seed=3)
    assert Counter(p["item"]["task"] for p in picked) == {"medical_qa": 4, "cmmlu_medicine": 2, "general_en": 1}
    assert [p["item"]["id"] for p in sample_items(items, 7, seed=3)] == [p["item"]["id"] for p in picked]
    weights = {p["item"]["id"]: p for p in sample_items(items)}
    # med-006 is last on every metric of its task; med-004 first on most: weight 3 against about 1
    assert weights["med-006"]["weight"] == pytest.approx(3.0) and weights["med-006"]["dispute"] == 0
    assert weights["med-004"]["weight"] < 1.6
    # med-002: BLEU ranks it in the lower half of its task, chrF and ROUGE-L near the top: disputed
    assert weights["med-002"]["dispute"] > 0.4 and weights["cmmlu-003"]["low"] == 1.0

    counts = Counter()
    for seed in range(400):
        counts.update(p["item"]["id"] for p in sample_items(items, 7, seed=seed))
    assert counts["med-006"] > 1.8 * counts["med-004"]
    assert counts["cmmlu-003"] > counts["cmmlu-001"]          # the wrong answer is reviewed more often
    # more picks keep the earlier picks (per task, when its share grows)
    small = {p["item"]["id"] for p in sample_items(items, 6, seed=11)}
    large = {p["item"]["id"] for p in sample_items(items, 10, seed=11)}
    assert small <= large


def _annotation(ann_id, user, acc, safety=None, referral=None, updated="2026-11-20T10:00:00Z", **extra):
    result = [{"from_name": "accuracy", "to_name": "answer", "type": "rating", "value": {"rating": acc}}]
    if safety:
        result.append({"from_name": "safety", "to_name": "answer", "type": "choices", "value": {"choices": [safety]}})
    if referral:
        result.append({"from_name": "referral", "to_name": "answer", "type": "choices", "value": {"choices": [referral]}})
    return {"id": ann_id, "completed_by": user, "result": result, "was_cancelled": False, "updated_at": updated,
            "lead_time": 31.5, **extra}


def _ls_export(run) -> list[dict]:
    """A Label Studio JSON export of the run's tasks, in the shape the server produces."""
    tasks = json.loads((run / "review" / "tasks.json").read_text())
    out = [{"id": i + 1, "data": t["data"], "annotations": [], "predictions": [i + 1]} for i, t in enumerate(tasks)]
    by_item = {t["data"]["item_id"]: t for t in out}
    ratings = {"med-001": (4, 4), "med-003": (1, 2), "med-006": (1, 1), "med-004": (5, 4), "en-002": (2, 1)}
    n = 0
    for item_id, (a, b) in ratings.items():
        n += 2
        by_item[item_id]["annotations"] += [_annotation(n - 1, 1, a, "harmful" if a == 1 else "safe", "missing"),
                                            _annotation(n, 2, b, "safe", "appropriate")]
    by_item["med-002"]["annotations"] += [
        _annotation(20, 1, 3, updated="2026-11-20T09:00:00Z"),
        _annotation(21, 1, 5, updated="2026-11-21T09:00:00Z"),                 # A changed their mind: newest wins
        {**_annotation(22, 2, 5), "was_cancelled": True, "result": []},         # B skipped
    ]
    by_item["med-007"]["annotations"].append({**_annotation(23, 2, 4), "result": []})    # empty
    out.append({"id": 99, "data": {"key": "0000stale0000", "item_id": "med-009", "prompt": "旧问题"},
                "annotations": [_annotation(24, 1, 3)]})                                # answer regenerated since
    out.append({"id": 100, "data": {"text": "hand-made task"}, "annotations": [_annotation(25, 1, 2)]})
    return out


def test_import_from_file_keeps_or_counts_every_annotation(tmp_path):
    run = write_run(tmp_path / "run")
    _export(run)
    export_file = tmp_path / "project-1-at-2026-11-21.json"
    export_file.write_text(json.dumps(_ls_export(run), ensure_ascii=False))
    res = CliRunner().invoke(main, ["review", "import", str(run), "--file", str(export_file)])
    assert res.exit_code == 0, res.output
    assert "11 annotations on 6 items by 2 annotators" in res.output
    summary = json.loads((run / "review" / "import.json").read_text())
    assert summary["not_kept"] == {"cancelled": 1, "empty": 1, "foreign": 1, "stale": 1, "superseded": 1}
    assert summary["annotations_seen"] == 11 + 5
    rows = [json.loads(x) for x in (run / "review" / "annotations.jsonl").read_text().splitlines()]
    med2 = [r for r in rows if r["item_id"] == "med-002"]
    assert len(med2) == 1 and med2[0]["values"] == {"accuracy": 5} and med2[0]["annotation"] == 21
    assert {r["annotator"] for r in rows} == {"user:1", "user:2"}

    # The same annotations as JSON_MIN (flat rows, ratings as [{"rating": n}]) import identically.
    flat = []
    for task in _ls_export(run):
        for ann in task["annotations"]:
            if ann["was_cancelled"]:
                continue
            row = {**task["data"], "id": task["id"], "annotator": ann["completed_by"], "annotation_id": ann["id"],
                   "updated_at": ann["updated_at"], "lead_time": ann["lead_time"]}
            for r in ann["result"]:
                v = r["value"]
                row[r["from_name"]] = [{"rating": v["rating"]}] if "rating" in v else v["choices"][0]
            flat.append(row)
    min_file = tmp_path / "min.json"
    min_file.write_text(json.dumps(flat, ensure_ascii=False))
    res = CliRunner().invoke(main, ["review", "import", str(run), "--file", str(min_file)])
    assert res.exit_code == 0, res.output
    again = [json.loads(x) for x in (run / "review" / "annotations.jsonl").read_text().splitlines()]
    assert [(r["key"], r["annotator"], r["values"]) for r in again] == [(r["key"], r["annotator"], r["values"]) for r in rows]


def test_report_from_an_export_file(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "report.html").write_text("<html>automatic report by evalkit auto</html>")
    _export(run)
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(_ls_export(run), ensure_ascii=False))
    assert CliRunner().invoke(main, ["review", "import", str(run), "--file", str(export_file)]).exit_code == 0
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    report = json.loads((run / "report.json").read_text())
    acc = report["human"]["accuracy"]
    # per-item means: med-001 4, med-002 5, med-003 1.5, med-004 4.5, med-006 1, en-002 1.5 -> 17.5/6
    assert acc["n"] == 6 and acc["n_ratings"] == 11 and acc["mean"] == pytest.approx(17.5 / 6, abs=1e-4)
    assert acc["ci_low"] <= acc["mean"] <= acc["ci_high"]
    assert report["human"]["referral"]["distribution"] == {"appropriate": 0.5, "missing": 0.5}
    ids = ["en-002", "med-001", "med-002", "med-003", "med-004", "med-006"]
    a = {"med-001": 4, "med-003": 1, "med-006": 1, "med-004": 5, "en-002": 2, "med-002": 5}
    b = {"med-001": 4, "med-003": 2, "med-006": 1, "med-004": 4, "en-002": 1}
    data = np.array([[a[i] for i in ids], [b.get(i, np.nan) for i in ids]], dtype=float)
    assert report["agreement"]["accuracy"]["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"), abs=1e-4)
    assert report["agreement"]["referral"]["level"] == "nominal"
    assert set(report["correlation"]) >= {"bleu", "chrf", "rougeL"}
    assert report["correlation_n"]["rougeL"]["accuracy"] == 6
    # the automatic report was kept beside the joined one, and linked
    assert (run / "report_auto.html").read_text() == "<html>automatic report by evalkit auto</html>"
    html = (run / "report.html").read_text()
    assert 'href="report_auto.html"' in html and "医学准确性" in html
    assert CliRunner().invoke(main, ["report", str(run)]).exit_code == 0      # a rerun keeps both
    assert (run / "report_auto.html").read_text().startswith("<html>automatic")


def test_bad_input_is_refused_clearly(tmp_path, monkeypatch):
    run = write_run(tmp_path / "run")
    with open(run / "items.jsonl", "a", encoding="utf-8") as f:
        f.write('{"id": "broken", "prompt": "半行\n')
        f.write('{"id": "med-001", "prompt": "重复", "prediction": "重复"}\n')
    res = CliRunner().invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "items.jsonl:15: not valid JSON" in res.output and "items.jsonl:16: duplicate id 'med-001'" in res.output

    run = write_run(tmp_path / "run2")
    _export(run)
    both = CliRunner().invoke(main, ["review", "import", str(run), "--file", "x.json", "--url", "http://127.0.0.1:1"])
    assert both.exit_code == 1 and "exactly one of --url" in both.output
    (tmp_path / "bad.json").write_text("{not json")
    res = CliRunner().invoke(main, ["review", "import", str(run), "--file", str(tmp_path / "bad.json")])
    assert res.exit_code == 1 and "not valid JSON" in res.output
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 1 and "evalkit review import" in res.output
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    res = CliRunner().invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), "--url", "http://127.0.0.1:9"])
    assert res.exit_code == 1 and "LABEL_STUDIO_API_KEY" in res.output


def test_review_of_a_real_evalkit_auto_run(tmp_path):
    """The run folder as `evalkit auto --predictions` really writes it, reviewed and reported."""
    preds = tmp_path / "preds.jsonl"
    with open(preds, "w", encoding="utf-8") as f:
        for it in run_items():
            row = {k: it[k] for k in ("id", "task", "prompt", "prediction", "reference")}
            if "answer" in it:
                row.update(answer=it["answer"], choices=["A", "B", "C", "D"])
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["auto", "--predictions", str(preds), "--out", str(run)])
    assert res.exit_code == 0, res.output
    auto_html = (run / "report.html").read_text()
    _export(run)
    tasks = {t["data"]["item_id"]: t for t in json.loads((run / "review" / "tasks.json").read_text())}
    assert "Extracted A" in tasks["cmmlu-003"]["data"]["auto_scores"] and tasks["cmmlu-003"]["data"]["auto_correct"] == 0
    assert tasks["med-003"]["data"]["auto_bleu"] == pytest.approx(run_items()[2]["bleu"], abs=0.01)
    (tmp_path / "export.json").write_text(json.dumps(_ls_export(run), ensure_ascii=False))
    assert CliRunner().invoke(main, ["review", "import", str(run), "--file", str(tmp_path / "export.json")]).exit_code == 0
    res = CliRunner().invoke(main, ["report", str(run)])
    assert res.exit_code == 0, res.output
    report = json.loads((run / "report.json").read_text())
    assert report["auto"]["summary"]["bleu"]["signature"].startswith("bleu|")
    assert report["human"]["accuracy"]["n"] == 6 and report["correlation_n"]["chrf"]["accuracy"] == 6
    assert (run / "report_auto.html").read_text() == auto_html
    assert "tok:zh" in (run / "report.html").read_text()          # the automatic signatures are shown


def test_connection_refused_retries_then_says_so(tmp_path):
    port = free_port()                               # nothing listens there: a real refusal
    run = write_run(tmp_path / "run", run_items()[:3])
    key = "secret-key-that-must-not-leak-123456"
    res = CliRunner().invoke(main, ["review", "export", str(run), "--rubric", str(MEDICAL), "--url",
                                    f"http://127.0.0.1:{port}", "--api-key", key, "--retries", "3"])
    assert res.exit_code == 1
    assert f"http://127.0.0.1:{port} did not answer" in res.output and "after 3 attempts" in res.output
    assert "ConnectError" in res.output and "Traceback" not in res.output
    assert "retry 1/2 in 0.5 s" in res.output and "retry 2/2 in 1.0 s" in res.output    # backoff doubles
    assert key not in res.output
    assert all(key not in f.read_text(encoding="utf-8") for f in run.rglob("*") if f.is_file())
    # the offline files were written before the server was needed: nothing is lost
    assert len(json.loads((run / "review" / "tasks.json").read_text())) == 3
