"""Data parallelism on CPU: `torchrun --nproc-per-node 2` with gloo gives the single-process run's
per-step losses (the loss is normalised by the whole step's learned tokens on all processes),
rank 0 alone writes checkpoints and logs, and a 2-process checkpoint resumes on 1 process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curate.writing import write_jsonl
from trainplug.report import read_jsonl
from trainplug.testing import sample_records, tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_resume_on_one(tmp_path, model_dir):
    tiny = tiny_model(tmp_path / "tiny", model_dir)
    data = tmp_path / "curated.jsonl"
    write_jsonl(data, sample_records(2))
    cfg = {"data": str(data), "model": str(tiny), "max_seq_len": 96, "batch_tokens": 160, "grad_accum": 3,
           "max_steps": 5, "save_every": 2, "eval_every": 0, "eval_fraction": 0.1, "lr": 3e-3, "progress": False,
           "tensorboard": False, "lora": {"dropout": 0.0}}   # no dropout: the random streams differ per process
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def sft(out: str, nproc: int, *extra: str) -> subprocess.CompletedProcess:
        y = tmp_path / f"{out}.yaml"
        y.write_text(json.dumps({**cfg, "out": str(tmp_path / out)}), encoding="utf-8")
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
                    if nproc > 1 else [sys.executable])
        r = subprocess.run(launcher + ["-m", "trainplug.cli", "sft", str(y), *extra], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    sft("one", 1)
    sft("two", 2)
    one, two = read_jsonl(tmp_path / "one" / "metrics.jsonl"), read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3, 4, 5]          # rank 0 alone logs: no duplicate rows
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), (a["step"], a["loss"], b["loss"])
        assert b["tokens"] == a["tokens"] and b["trainable_tokens"] == a["trainable_tokens"]
    ckpts = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert ckpts == ["step-0000002", "step-0000004", "step-0000005"], ckpts   # the newest 3, no temp folders
    st = json.loads((tmp_path / "two" / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert st["world_size"] == 2
    # lose everything after step 2, then resume on ONE process
    for name in ("step-0000004", "step-0000005"):
        shutil.rmtree(tmp_path / "two" / "checkpoints" / name)
    sft("two", 1, "--resume")
    resumed = read_jsonl(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]
    for a, b in zip(one, resumed):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4), (a["step"], a["loss"], b["loss"])
    ev = [e for e in read_jsonl(tmp_path / "two" / "events.jsonl") if e["event"] == "resumed"]
    assert ev[-1]["world_size"] == 1 and ev[-1]["step"] == 2
