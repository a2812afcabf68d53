"""`curate export`: alpaca / sharegpt / messages, read back by curate's own reader (curate/export.py)."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.reading import SourceSpec, read_source
from curate.writing import read_records

SYSTEM = {"role": "system", "content": "你是一名耐心的全科医生。"}
DIALOGUES = [
    {"id": "multi-1", "task": "问诊", "messages": [
        SYSTEM, {"role": "user", "content": "我最近总是头晕。"}, {"role": "assistant", "content": "头晕多久了？"},
        {"role": "user", "content": "大概一周。"}, {"role": "assistant", "content": "建议先测量血压。"}]},
    {"id": "single-1", "messages": [{"role": "user", "content": "What is a normal resting heart rate?"},
                                    {"role": "assistant", "content": "60 to 100 beats per minute for adults."}]},
    {"id": "two-users", "messages": [{"role": "user", "content": "第一句。"}, {"role": "user", "content": "第二句。"},
                                     {"role": "assistant", "content": "收到。"}]},
    {"id": "doc-1", "text": "高血压是一种常见的慢性病。"},
]


@pytest.fixture(scope="module")
def curated(tmp_path_factory, shared_data) -> Path:
    d = tmp_path_factory.mktemp("export")
    (d / "chat.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in DIALOGUES) + "\n", encoding="utf-8")
    (d / "c.yaml").write_text(f"""
inputs:
  - chat.jsonl
  - {{path: {shared_data / 'medical_dialogue'}, map: "user=ask,assistant=answer,task=department"}}
out: out
""", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(d / "c.yaml"), "--only", "balance", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    return d / "out" / "curated.parquet"


def export(curated: Path, fmt: str, out: Path) -> str:
    result = CliRunner().invoke(main, ["export", "--input", str(curated), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("fmt,suffix", [("alpaca", ".json"), ("sharegpt", ".jsonl"), ("messages", ".jsonl")])
def test_round_trip_through_curates_reader(curated, tmp_path, fmt, suffix):
    out = tmp_path / f"train{suffix}"
    output = export(curated, fmt, out)
    originals = {r["id"]: r for r in read_records(curated)}
    back = {}
    for rec, rej in read_source(SourceSpec(str(out))):
        assert rej is None, rej
        back[rec["id"]] = rec
    skipped = {json.loads(line)["id"]: json.loads(line)["reason"]
               for line in Path(f"{out}.skipped.jsonl").read_text(encoding="utf-8").splitlines()}
    assert set(back) | set(skipped) == set(originals) and not set(back) & set(skipped)
    assert f"wrote {len(back):,} records" in output
    for rid, rec in back.items():
        assert rec["messages"] == originals[rid]["messages"], rid
        assert rec["task"] == originals[rid]["task"]
    assert "plain document" in skipped["doc-1"]
    if fmt == "messages":
        assert set(skipped) == {i for i, r in originals.items() if not r["messages"]}
    else:   # LLaMA-Factory needs alternating user/assistant turns
        assert "alternating" in skipped["two-users"] and "two-users" not in back
    assert len(back) >= 7644


def test_alpaca_layout_for_llama_factory(curated, tmp_path):
    out = tmp_path / "train.json"
    export(curated, "alpaca", out)
    rows = {r["id"]: r for r in json.loads(out.read_text(encoding="utf-8"))}   # one JSON array
    assert rows["multi-1"] == {"instruction": "大概一周。", "input": "", "output": "建议先测量血压。",
                               "system": SYSTEM["content"], "history": [["我最近总是头晕。", "头晕多久了？"]],
                               "id": "multi-1", "task": "问诊"}
    assert set(rows["single-1"]) == {"instruction", "input", "output", "id"}


def test_sharegpt_layout_for_llama_factory(curated, tmp_path):
    out = tmp_path / "train.jsonl"
    export(curated, "sharegpt", out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    multi = next(r for r in rows if r["id"] == "multi-1")
    assert multi["system"] == SYSTEM["content"]
    assert [t["from"] for t in multi["conversations"]] == ["human", "gpt", "human", "gpt"]
    for r in rows:
        assert [t["from"] for t in r["conversations"]] == ["human", "gpt"] * (len(r["conversations"]) // 2)


def test_messages_load_into_a_chat_template_as_trl_does(curated, tmp_path, model_dir):
    # TRL's SFTTrainer renders a "messages" column with the tokenizer's chat template.
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    out = tmp_path / "train.jsonl"
    export(curated, "messages", out)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    multi = next(r for r in rows if r["id"] == "multi-1")
    rendered = tok.apply_chat_template(multi["messages"], tokenize=False)
    for m in multi["messages"]:
        assert m["content"] in rendered
    last = rows[-1]["messages"]   # a real medical record
    ids = tok(tok.apply_chat_template(last, tokenize=False), add_special_tokens=False)["input_ids"]
    assert last[-1]["content"] in tok.decode(ids)


def test_export_from_jsonl_output_and_bad_input(tmp_path):
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps(DIALOGUES[1]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--input", str(src), "--out", str(tmp_path / "o"), "--format", "jsonl",
                                       "--only", "balance", "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    export(tmp_path / "o/curated.jsonl", "alpaca", tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text())[0]["output"] == DIALOGUES[1]["messages"][1]["content"]
    assert not Path(f"{tmp_path / 'a.json'}.skipped.jsonl").exists()
    bad = CliRunner().invoke(main, ["export", "--input", str(tmp_path / "missing.parquet"), "--format", "alpaca",
                                    "--out", str(tmp_path / "x.json")])
    assert bad.exit_code != 0 and "does not exist" in bad.output and not (tmp_path / "x.json").exists()
