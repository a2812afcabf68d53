"""The real SmolLM2-135M-Instruct, 20 LoRA steps on CPU on curated medical dialogues
(../shared/data/medical_dialogue through `curate run`, default stages): the held-out loss goes down."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from curate.cli import main as curate_main
from curate.writing import read_records, write_jsonl
from trainplug.cli import main
from trainplug.report import read_jsonl


@pytest.mark.slow
def test_twenty_lora_steps_lower_the_held_out_loss(tmp_path, shared_data, model_dir):
    csv = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    cur = CliRunner().invoke(curate_main, ["run", "--input", str(csv), "--map", "user=title,assistant=answer,task=department",
                                           "--out", str(tmp_path / "curated"), "--no-progress"])
    assert cur.exit_code == 0, cur.output
    records = [r for _, r in zip(range(216), read_records(tmp_path / "curated" / "curated.parquet"))]
    assert len(records) == 216
    data = tmp_path / "medical.jsonl"
    write_jsonl(data, records)
    y = tmp_path / "run.yaml"
    y.write_text(json.dumps({
        "data": str(data), "model": str(model_dir), "max_seq_len": 96, "batch_tokens": 192, "max_steps": 20,
        "lr": 1e-3, "eval_fraction": 0.1, "eval_max": 16, "eval_every": 0, "save_every": 10,
        "progress": False, "tensorboard": False, "out": str(tmp_path / "out")}), encoding="utf-8")
    r = CliRunner().invoke(main, ["sft", str(y), "--threads", "2"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    man = json.loads((out / "manifest.json").read_text())
    assert man["data"]["train_records"] == 200 and man["data"]["eval_records"] == 16
    assert man["config"]["threads"] == 2
    before = next(e["eval_loss"] for e in read_jsonl(out / "events.jsonl") if e["event"] == "eval")
    rows = read_jsonl(out / "metrics.jsonl")
    after = rows[-1]["eval_loss"]
    assert len(rows) == 20 and after < before - 0.05, (before, after)
    assert (out / "adapter" / "adapter_model.safetensors").exists()
