"""`evalkit auto --predictions`: the run folder, its numbers, gates and bad input, on real text."""
from __future__ import annotations

import csv
import json
import random

import pytest
import sacrebleu
from click.testing import CliRunner
from rouge_score import rouge_scorer

from evalkit.cli import main
from evalkit.data import DataError, load_items
from evalkit.tokenize import CjkTokenizer

CHOICE = [
    ("c1", "下列哪种维生素缺乏会导致夜盲症？", ["维生素A", "维生素B1", "维生素C", "维生素D"], "A", "夜盲症与视紫红质有关，答案是A。"),
    ("c2", "阿司匹林最常见的不良反应是？", ["肝损伤", "胃肠道反应", "低血糖", "皮疹"], "B", "根据题意，A项错误，B项正确。答案：B"),
    ("c3", "正常成人安静时心率是？", ["40-60次/分", "60-100次/分", "100-120次/分", "120-140次/分"], "B", "所以选A。"),
    ("c4", "胰岛素由哪种细胞分泌？", ["α细胞", "β细胞", "δ细胞", "腺泡细胞"], "B", "The answer is (B)."),
    ("c5", "维生素C缺乏病是？", ["坏血病", "佝偻病", "脚气病", "夜盲症"], "A", "我不确定。"),
]


@pytest.fixture(scope="module")
def preds(shared_data, tmp_path_factory):
    """60 real doctors' answers (two departments) against other or half-copied answers, five
    choice questions answered in different styles, two English items."""
    path = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(path, encoding="gb18030", errors="replace", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["answer"].strip()]
    rng = random.Random(0)
    out = tmp_path_factory.mktemp("preds") / "preds.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        picked = [r for r in rows if r["department"] == "心血管科"][:30] + [r for r in rows if r["department"] == "消化科"][:30]
        for i, r in enumerate(picked):
            other = rng.choice(rows)["answer"]
            pred = r["answer"][: len(r["answer"]) // 2] + other[len(other) // 2:] if i % 2 else other
            f.write(json.dumps({"id": f"md-{i}", "task": r["department"], "prompt": r["ask"], "prediction": pred,
                                "reference": r["answer"]}, ensure_ascii=False) + "\n")
        for id_, q, choices, gold, pred in CHOICE:
            f.write(json.dumps({"id": id_, "task": "cmmlu", "prompt": q, "prediction": pred, "answer": gold,
                                "choices": choices}, ensure_ascii=False) + "\n")
        for i, (p, r) in enumerate([("Rest, ice and raise the ankle.", "Rest the ankle, apply ice and elevate it."),
                                    ("Take it with food.", "Take ibuprofen with food or milk.")]):
            f.write(json.dumps({"id": f"en-{i}", "task": "english", "prompt": "q", "prediction": p, "reference": r}) + "\n")
    return out


def _run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _rows(run):
    return [json.loads(line) for line in open(run / "items.jsonl", encoding="utf-8")]


def test_run_folder_fields_and_numbers(preds, tmp_path):
    run = tmp_path / "run"
    res = _run(["auto", "--predictions", str(preds), "--out", str(run), "--bootstrap", "300"])
    assert res.exit_code == 0, res.output
    assert {p.name for p in run.iterdir()} >= {"items.jsonl", "summary.json", "report.html", "manifest.json"}
    rows = _rows(run)
    assert len(rows) == 67 and len({r["id"] for r in rows}) == 67
    text = [r for r in rows if "answer" not in r]
    for r in text:
        assert {"id", "task", "prompt", "prediction", "reference", "bleu", "chrf", "rouge1", "rouge2", "rougeL"} <= set(r)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CjkTokenizer())
    for r in text:
        s = scorer.score(r["reference"], r["prediction"])
        assert (r["rouge1"], r["rouge2"], r["rougeL"]) == (s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure)
    choice = {r["id"]: r for r in rows if "answer" in r}
    assert {k: (v["extracted"], v["correct"]) for k, v in choice.items()} == {
        "c1": ("A", True), "c2": ("B", True), "c3": ("A", False), "c4": ("B", True), "c5": (None, False)}

    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert set(summary) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "choice_acc", "choice_unparsed"}
    for name, e in summary.items():
        assert e["ci_low"] <= e["score"] <= e["ci_high"], name
        assert e["signature"].startswith(name) and "n:" in e["signature"] and "evalkit:" in e["signature"]
    assert summary["choice_acc"]["score"] == pytest.approx(0.6)
    assert summary["choice_unparsed"]["score"] == pytest.approx(0.2)
    assert set(summary["rougeL"]["tasks"]) == {"心血管科", "消化科", "english"}
    assert summary["rougeL"]["tasks"]["消化科"]["n"] == 30
    # corpus BLEU/chrF over the text items are sacrebleu's (zh tokenizer: the references are Chinese)
    hyps, refs = [r["prediction"] for r in text], [r["reference"] for r in text]
    assert summary["bleu"]["score"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score, abs=1e-9)
    assert summary["chrf"]["score"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9)
    assert "tok:zh" in summary["bleu"]["signature"]
    # per-task BLEU is a corpus score over the task's items
    cardio = [r for r in text if r["task"] == "心血管科"]
    assert summary["bleu"]["tasks"]["心血管科"]["score"] == pytest.approx(sacrebleu.corpus_bleu(
        [r["prediction"] for r in cardio], [[r["reference"] for r in cardio]], tokenize="zh").score, abs=1e-9)

    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["versions"]["sacrebleu"] and manifest["versions"]["rouge-score"]
    assert len(manifest["data"]["sha256"]) == 64 and manifest["seed"] == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "<svg" in html and "Worst items" in html and "心血管科" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "rougeL" in res.output and "choice_acc" in res.output   # the terminal table


def test_rerun_gives_identical_files(preds, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        assert _run(["auto", "--predictions", str(preds), "--out", str(run), "--bootstrap", "100"]).exit_code == 0
    for name in ("items.jsonl", "summary.json", "report.html"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_gates_decide_the_exit_code(preds, tmp_path):
    ok = _run(["auto", "--predictions", str(preds), "--out", str(tmp_path / "ok"), "--bootstrap", "0",
               "--gate", "rougeL>=0.05", "--gate", "choice_acc@cmmlu>0.5"])
    assert ok.exit_code == 0 and "gate rougeL>=0.05: pass" in ok.output
    bad = _run(["auto", "--predictions", str(preds), "--out", str(tmp_path / "bad"), "--bootstrap", "0",
                "--gate", "rougeL>=0.99", "--gate", "em>=0.1"])
    assert bad.exit_code == 1
    assert "gate rougeL>=0.99: FAIL" in bad.output and "gate em>=0.1: FAIL (actual not computed)" in bad.output
    assert (tmp_path / "bad" / "summary.json").is_file()   # the results are still written
    wrong = _run(["auto", "--predictions", str(preds), "--out", str(tmp_path / "w"), "--gate", "rougeX>=1",
                  "--gate", "bleu=>3"])
    assert wrong.exit_code != 0 and "rougeX" in wrong.output and "bleu=>3" in wrong.output
    assert not (tmp_path / "w").exists()


def test_bad_input_is_refused_with_every_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps({"id": "1", "task": "t", "prompt": "问", "prediction": "答", "reference": "答"}, ensure_ascii=False),
        '{"id": "2", "prompt": "broken',
        json.dumps({"id": "1", "prompt": "问", "prediction": "答", "reference": "答"}, ensure_ascii=False),
        json.dumps({"id": "3", "prompt": "问", "reference": "答"}, ensure_ascii=False),
        json.dumps({"id": "4", "prompt": "问", "prediction": "B", "answer": "E", "choices": ["a", "b"]}),
    ]) + "\n", encoding="utf-8")
    res = _run(["auto", "--predictions", str(bad), "--out", str(tmp_path / "out")])
    assert res.exit_code != 0
    for needle in ("bad.jsonl:2: malformed JSON", "duplicate id '1'", "bad.jsonl:4: no prediction",
                   "bad.jsonl:5: answer must be one letter of AB"):
        assert needle in res.output, res.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError):
        load_items(tmp_path / "missing.jsonl")


def test_yaml_config_and_its_problems(preds, tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"predictions: {preds}\nout: {tmp_path / 'run'}\nmetrics: [rouge]\nbootstrap: 50\n"
                   "gates: ['rouge1>=0.01']\n", encoding="utf-8")
    res = _run(["auto", str(cfg)])
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "run" / "summary.json").read_text())) == {"rouge1", "rouge2", "rougeL"}
    cfg.write_text("predictions: nowhere.jsonl\nmetrics: [bleu, meteor]\nbootstrap: -1\ncolour: red\n"
                   "generation: {beams: 4}\n", encoding="utf-8")
    res = _run(["auto", str(cfg)])
    assert res.exit_code != 0
    for needle in ("nowhere.jsonl does not exist", "unknown metric 'meteor'", "bootstrap must be", "unknown option 'colour'",
                   "generation.beams"):
        assert needle in res.output, res.output


def test_curated_records_become_prompt_and_reference(tmp_path):
    from curate.schema import make_record, to_frame
    from curate.writing import write_jsonl, write_parquet
    recs = [make_record("r1", "s", task="内科", messages=[
        {"role": "system", "content": "你是医生。"}, {"role": "user", "content": "头痛怎么办？"},
        {"role": "assistant", "content": "多休息。"}, {"role": "user", "content": "还要吃药吗？"},
        {"role": "assistant", "content": "可以服用布洛芬。"}])]
    write_jsonl(tmp_path / "c.jsonl", recs)
    write_parquet(tmp_path / "c.parquet", to_frame(recs))
    for path in (tmp_path / "c.jsonl", tmp_path / "c.parquet"):
        (item,) = load_items(path)
        assert item["references"] == ["可以服用布洛芬。"] and item["task"] == "内科"
        assert [m["role"] for m in item["messages"]] == ["system", "user", "assistant", "user"]
        assert item["prompt"] == "你是医生。\n头痛怎么办？\n多休息。\n还要吃药吗？"
