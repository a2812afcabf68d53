"""`curate run`: every record read ends in curated or rejects, per source, on real inputs."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main

MEDICAL = "medical_dialogue/internal_medicine_5000-6000.gb18030.csv"


def curate(*args, ok=True):
    result = CliRunner().invoke(main, ["run", "--no-progress", *args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def outputs(out: Path) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    return (json.loads((out / "report.json").read_text(encoding="utf-8")),
            pl.read_parquet(out / "curated.parquet"), pl.read_parquet(out / "rejects.parquet"))


def records_in(path: Path) -> int:
    """How many records a real input holds, counted without curate's reader."""
    if path.suffix == ".csv":
        return len(list(csv.DictReader(io.StringIO(path.read_bytes().decode("gb18030")))))
    text = path.read_text(encoding="utf-8")
    try:
        return len(json.loads(text))
    except json.JSONDecodeError:   # the .partial file: count its objects
        return text.count('"instruction":')


def check_accounting(report, kept, rejects) -> None:
    for src, s in report["sources"].items():
        k = kept.filter(pl.col("source") == src).height
        j = rejects.filter(pl.col("source") == src).height
        assert (s["kept"], s["rejected"]) == (k, j), src
        assert s["read"] == k + j, src
    assert kept["id"].is_unique().all()
    assert rejects.filter((pl.col("stage") == "") | pl.col("reason").is_null() | (pl.col("reason") == "")).height == 0
    assert report["totals"] == {"read": kept.height + rejects.height, "kept": kept.height, "rejected": rejects.height}


@pytest.mark.slow
def test_real_corpora_through_the_default_pipeline(tmp_path, shared_data):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
inputs:
  - {{path: {shared_data / MEDICAL}, map: "user=ask,assistant=answer,task=department"}}
  - {shared_data / 'alpaca_zh'}
out: {tmp_path / 'out'}
""", encoding="utf-8")
    curate(str(cfg))
    report, kept, rejects = outputs(tmp_path / "out")
    check_accounting(report, kept, rejects)
    assert len(report["sources"]) == 7
    for src, s in report["sources"].items():
        assert s["read"] == records_in(Path(src)), src
    steps = [f["stage"] for f in report["funnel"]]
    assert steps == ["read", "normalize", "language", "fillers", "safety", "quality", "history", "dedup", "balance", "mix"]
    assert sum(sum(f["dropped"].values()) for f in report["funnel"]) == rejects.height


def test_bad_lines_and_a_broken_array_are_rejected_and_the_run_goes_on(tmp_path, shared_data):
    good = {"messages": [{"role": "user", "content": "血压140/90算高吗？"},
                         {"role": "assistant", "content": "成人血压达到140/90 mmHg即属于高血压范围，建议复测确认。"}]}
    jl = tmp_path / "chat.jsonl"
    jl.write_text(json.dumps(good, ensure_ascii=False) + "\n{not json\n"
                  + json.dumps({**good, "id": "own-id"}, ensure_ascii=False) + "\n", encoding="utf-8")
    real = json.loads((shared_data / "alpaca_zh/alpaca_zh_00000-03252.json").read_text(encoding="utf-8"))[:20]
    text = json.dumps(real, ensure_ascii=False, indent=2)
    cut = text.rindex('"instruction"')
    (tmp_path / "broken.json").write_text(text[:cut + 20], encoding="utf-8")
    curate("--input", str(jl), "--input", str(tmp_path / "broken.json"),
           "--input", str(shared_data / "alpaca_zh/alpaca_zh_09407-12345.partial.json"),
           "--out", str(tmp_path / "out"), "--only", "balance,history,mix", "--workers", "1")
    report, kept, rejects = outputs(tmp_path / "out")
    check_accounting(report, kept, rejects)
    read_rejects = rejects.filter(pl.col("stage") == "read").sort("detail")
    assert read_rejects["reason"].to_list() == ["malformed:json", "malformed:json"]
    broken, line = read_rejects.row(0, named=True), read_rejects.row(1, named=True)
    assert broken["detail"].startswith(f"{tmp_path / 'broken.json'}:{text.count(chr(10), 0, cut)}:")
    assert "the JSON array breaks" in broken["detail"]
    assert line["detail"].startswith(f"{jl}:2:")
    assert report["sources"][str(tmp_path / "broken.json")]["read"] == 20   # 19 before the break + the rest
    assert kept.filter(pl.col("source") == str(tmp_path / "broken.json")).height + \
        rejects.filter((pl.col("source") == str(tmp_path / "broken.json")) & (pl.col("stage") != "read")).height == 19
    assert "own-id" in kept["id"].to_list() + rejects["id"].to_list()


def test_ids_own_kept_and_collisions_made_unique(tmp_path):
    def qa(i, **extra):
        return json.dumps({"question": f"第{i}个问题是什么？", "answer": f"这是第{i}个回答，内容足够长。", **extra},
                          ensure_ascii=False)
    (tmp_path / "a.jsonl").write_text("\n".join(qa(i, id=str(i)) for i in range(1, 4)) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n".join([qa(10, id="1"), qa(11, id="2"), qa(12, id="2"), qa(13)]) + "\n",
                                      encoding="utf-8")
    one_line = [{"instruction": f"指令{i}", "input": "", "output": f"输出{i}"} for i in range(3)]
    (tmp_path / "c.json").write_text(json.dumps(one_line, ensure_ascii=False), encoding="utf-8")
    curate("--input", str(tmp_path / "a.jsonl"), "--input", str(tmp_path / "b.jsonl"), "--input", str(tmp_path / "c.json"),
           "--out", str(tmp_path / "out"), "--only", "balance", "--workers", "1")
    _, kept, rejects = outputs(tmp_path / "out")
    assert rejects.height == 0
    ids = {rid: json.loads(meta) for rid, meta in zip(kept["id"].to_list(), kept["meta"].to_list())}
    assert {"1", "2", "3", "b:1", "b:2", "b:2#2", "b:4", "c:1", "c:2", "c:3"} == set(ids)
    assert ids["b:1"]["orig_id"] == "1" and ids["b:2#2"]["orig_id"] == "2" and "orig_id" not in ids["1"]
