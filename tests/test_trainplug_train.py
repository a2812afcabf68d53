"""The sft recipe end to end on a tiny randomly initialised Llama (real transformers + peft code,
SmolLM2's tokenizer): outputs, exact resume after kill -9, the spike guard, methods, merge,
vocabulary growth, estimate."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from curate.writing import write_jsonl
from trainplug.cli import main
from trainplug.config import load_config
from trainplug.report import read_jsonl
from trainplug.testing import sample_records, tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, model_dir) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "model", model_dir)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("data") / "curated.jsonl"
    write_jsonl(p, sample_records(3, documents=True))
    return p


def config(tmp_path, tiny, data, **over) -> Path:
    cfg = {"data": str(data), "model": str(tiny), "max_seq_len": 96, "batch_tokens": 192, "max_steps": 6,
           "save_every": 2, "eval_every": 3, "eval_fraction": 0.1, "eval_max": 8, "lr": 3e-3, "progress": False,
           "out": str(tmp_path / "out"), **over}
    tmp_path.mkdir(parents=True, exist_ok=True)
    y = tmp_path / "run.yaml"
    y.write_text(json.dumps(cfg), encoding="utf-8")   # JSON is YAML
    return y


def test_outputs_rerun_and_refusals(tmp_path, tiny, data):
    y = config(tmp_path, tiny, data, max_steps=4)
    r = CliRunner().invoke(main, ["sft", str(y)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    assert (out / "adapter" / "adapter_model.safetensors").exists() and (out / "adapter" / "adapter_config.json").exists()
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step-0000000", "step-0000002", "step-0000004"]
    ck = out / "checkpoints" / "step-0000004"
    assert {p.name for p in ck.iterdir()} == {"trainable.safetensors", "optim.pt", "rng.pt", "config.json", "state.json"}
    assert json.loads((ck / "state.json").read_text())["cursor"] == 4
    assert json.loads((ck / "config.json").read_text())["lr"] == 3e-3           # the resolved config
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["loss"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    assert [r["step"] for r in rows if "eval_loss" in r] == [3, 4]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 2 and "eval" in html
    assert list((out / "tb").glob("events.out.tfevents*"))
    man = json.loads((out / "manifest.json").read_text())
    assert man["versions"]["peft"] and man["inputs"]["data"]["sha256"] and man["status"] == "finished"
    # a finished run is a no-op; a changed one is refused without --resume
    again = CliRunner().invoke(main, ["sft", str(y)])
    assert again.exit_code == 0 and "already finished" in again.output
    changed = CliRunner().invoke(main, ["sft", str(y), "--lr", "1e-3"])
    assert changed.exit_code != 0 and "--resume" in changed.output
    diff = CliRunner().invoke(main, ["sft", str(y), "--lr", "1e-3", "--resume"])
    assert diff.exit_code != 0 and "lr: the checkpoint has 0.003" in diff.output


@pytest.mark.slow
def test_resume_after_kill_9_repeats_the_uninterrupted_losses(tmp_path, tiny, data):
    cmd = [sys.executable, "-m", "trainplug.cli", "sft"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = config(tmp_path / "a", tiny, data, max_steps=8) if (tmp_path / "a").mkdir() is None else None
    subprocess.run(cmd + [str(full)], check=True, capture_output=True, env=env, cwd=ROOT)
    (tmp_path / "b").mkdir()
    y = config(tmp_path / "b", tiny, data, max_steps=8)
    out = tmp_path / "b" / "out"
    p = subprocess.Popen(cmd + [str(y)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    deadline = time.time() + 300
    while time.time() < deadline and len(read_jsonl(out / "metrics.jsonl")) < 5:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    killed_at = len(read_jsonl(out / "metrics.jsonl"))
    assert 5 <= killed_at < 8, "the run should be killed mid-way"
    r = subprocess.run(cmd + [str(y), "--resume"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    a = read_jsonl(tmp_path / "a" / "out" / "metrics.jsonl")
    b = read_jsonl(out / "metrics.jsonl")
    assert [x["step"] for x in b] == list(range(1, 9))
    for x, y_ in zip(a, b):
        assert y_["loss"] == pytest.approx(x["loss"], rel=1e-5, abs=1e-6), (x["step"], x["loss"], y_["loss"])
    events = read_jsonl(out / "events.jsonl")
    assert any(e["event"] == "resumed" and e["step"] == 4 for e in events)


def _prepare(tmp_path, tiny, data, **over):
    from trainplug.recipe import prepare
    y = config(tmp_path, tiny, data, **over)
    return prepare(load_config(str(y)))


@pytest.mark.slow
def test_spike_guard_rolls_back_a_poisoned_window(tmp_path, model_dir, data):
    """The real SmolLM2 (a trained model: garbage costs it far more than text), LoRA, two poisoned
    micro-batches of uniformly random tokens injected as steps 5 and 6."""
    import numpy as np

    from trainplug.data import Example
    from trainplug.recipe import train
    s = _prepare(tmp_path, model_dir, data, max_seq_len=64, batch_tokens=64, max_steps=8, save_every=2, eval_every=0,
                 eval_fraction=0.0, lr=1e-3, guard={"warmup_steps": 3, "spike_steps": 2, "lr_factor": 0.5})
    rng = np.random.default_rng(0)
    base = len(s.dataset.train)
    for k in range(2):
        ids = rng.integers(0, len(s.tok), size=60).astype(np.int32)
        s.dataset.train.append(Example(ids, np.ones(60, bool), f"poison-{k}"))
        s.plan.lengths.append(60)
        s.plan.kinds.append("sft")
    s.plan.steps[4], s.plan.steps[5] = [[base]], [[base + 1]]
    summary = train(s)
    out = Path(s.cfg["out"])
    events = read_jsonl(out / "events.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds.count("spike") == 2 and kinds.count("rollback") == 1, events
    spikes = [e for e in events if e["event"] == "spike"]
    assert [e["cursor"] for e in spikes] == [4, 5] and all(e["loss"] > 3 * e["ema_loss"] for e in spikes)
    rb = next(e for e in events if e["event"] == "rollback")
    assert rb["skipped_cursors"] == [4, 5] and rb["to_step"] == 4 and rb["lr_scale"] == 0.5
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))        # 8 planned - 2 skipped, one history
    assert [r["cursor"] for r in rows] == [0, 1, 2, 3, 6, 7]
    assert max(r["loss"] for r in rows) < min(e["loss"] for e in spikes) / 2   # no poisoned step in the history
    import math   # the step after the rollback runs at half the cosine schedule's rate (1 warm-up step of 8)
    assert rows[4]["lr"] == pytest.approx(0.5 * 1e-3 * 0.5 * (1 + math.cos(math.pi * (4 - 1) / (8 - 1))))
    assert summary["rollbacks"] == 1 and summary["skipped_steps"] == 2 and summary["status"] == "finished"
    assert "rollback" in (out / "report.html").read_text(encoding="utf-8")


def test_nonfinite_loss_skips_the_step(tmp_path, tiny, data, monkeypatch):
    from trainplug import recipe
    s = _prepare(tmp_path, tiny, data, max_steps=5, eval_every=0, eval_fraction=0.0)
    real, calls = recipe.loss_sum, {"n": 0}

    def nan_on_third_step(model, batch, *a):
        # A NaN loss cannot be produced on purpose with real data in fp32; inject it.
        calls["n"] += 1
        out = real(model, batch, *a)
        return out * float("nan") if calls["n"] == 3 else out
    monkeypatch.setattr(recipe, "loss_sum", nan_on_third_step)
    before = {n: p.detach().clone() for n, p in s.model.named_parameters() if p.requires_grad}
    recipe.train(s)
    events = read_jsonl(Path(s.cfg["out"]) / "events.jsonl")
    skip = [e for e in events if e["event"] == "nonfinite_skip"]
    assert len(skip) == 1 and skip[0]["cursor"] == 2
    rows = read_jsonl(Path(s.cfg["out"]) / "metrics.jsonl")
    assert [r["cursor"] for r in rows] == [0, 1, 3, 4] and all(r["grad_norm"] == r["grad_norm"] for r in rows)
    after = dict(s.model.named_parameters())
    assert all(torch.isfinite(after[n]).all() for n in before)


@pytest.mark.parametrize("method", ["ia3", "prefix", "full"])
def test_other_methods_train_and_save(tmp_path, tiny, data, method):
    r = CliRunner().invoke(main, ["sft", str(config(tmp_path, tiny, data, max_steps=2, eval_every=0)), "--method", method])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out"
    saved = out / ("model" if method == "full" else "adapter")
    assert (saved / ("model.safetensors" if method == "full" else "adapter_model.safetensors")).exists()
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]


def test_merge_gives_the_adapters_outputs(tmp_path, tiny, data):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    r = CliRunner().invoke(main, ["sft", str(config(tmp_path, tiny, data, max_steps=3, eval_every=0, lr=5e-2))])
    assert r.exit_code == 0, r.output
    adapter, merged_dir = tmp_path / "out" / "adapter", tmp_path / "merged"
    r = CliRunner().invoke(main, ["merge", "--adapter", str(adapter), "--out", str(merged_dir)])
    assert r.exit_code == 0, r.output
    ids = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356]])
    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    with torch.no_grad():
        plain = base(ids).logits
        peft_logits = PeftModel.from_pretrained(base, str(adapter)).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32)(ids).logits
    assert not torch.allclose(plain, peft_logits, atol=1e-4)   # the adapter changed something
    torch.testing.assert_close(merged, peft_logits, rtol=1e-4, atol=1e-4)


def test_a_larger_tokenizer_grows_the_model_and_trains_the_new_rows(tmp_path, tiny, data):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tiny))
    tok.add_tokens(["胰岛素抵抗", "心肌梗死", "高血压"])
    tok.save_pretrained(str(tmp_path / "tok"))
    r = CliRunner().invoke(main, ["sft", str(config(tmp_path, tiny, data, max_steps=2, eval_every=0)),
                                  "--tokenizer", str(tmp_path / "tok")])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert sorted(next(iter(cfg["trainable_token_indices"].values()))) == [len(tok) - 3, len(tok) - 2, len(tok) - 1]
    ev = [e for e in read_jsonl(tmp_path / "out" / "events.jsonl") if e["event"] == "vocab_expanded"]
    assert ev and ev[0]["new_tokens"] == 3


def test_estimate_before_loading(tmp_path):
    from transformers import LlamaConfig
    llama7b = tmp_path / "llama-7b"
    LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000).save_pretrained(str(llama7b))
    from trainplug.estimate import estimate
    full, lora = estimate(str(llama7b), "full"), estimate(str(llama7b), "lora")
    assert 6.6e9 < full["params"] < 6.8e9
    assert 110 < full["total_gib"] < 200 and 18 < lora["total_gib"] < 40, (full["total_gib"], lora["total_gib"])
    assert full["gib"]["optimizer"] == pytest.approx(full["params"] * 8 / 2**30)
    assert lora["trainable_share"] < 0.01 and lora["gib"]["optimizer"] < 1
    data = tmp_path / "d.jsonl"
    write_jsonl(data, sample_records())
    r = CliRunner().invoke(main, ["estimate", "--model", str(llama7b), "--method", "full", "--data", str(data)])
    assert r.exit_code == 0, r.output
    assert "optimizer" in r.output and "total" in r.output and "start from a chat" in r.output


def test_accumulated_micro_batches_give_the_big_batch_gradient(tmp_path, tiny, data):
    """Two micro-batches with very different numbers of learned tokens, accumulated, must train
    exactly like one micro-batch holding both (the loss is divided by the whole step's tokens,
    not averaged per micro-batch)."""
    from trainplug.packing import Plan
    from trainplug.recipe import train
    losses = {}
    for name, accum in (("split", 2), ("whole", 1)):
        s = _prepare(tmp_path / name, tiny, data, max_steps=3, eval_fraction=0.0, lr=2e-2, guard={"enabled": False},
                     grad_accum=accum, lora={"dropout": 0.0}, batch_tokens=400)
        lengths = [len(e) for e in s.dataset.train]
        short = min(range(len(lengths)), key=lambda i: s.dataset.train[i].n_trainable)
        long_ = max(range(len(lengths)), key=lambda i: s.dataset.train[i].n_trainable)
        assert s.dataset.train[long_].n_trainable > 3 * s.dataset.train[short].n_trainable
        steps = [[[short], [long_]]] * 3 if accum == 2 else [[[short, long_]]] * 3
        s.plan = Plan.from_steps(steps, lengths)
        train(s)
        losses[name] = [r["loss"] for r in read_jsonl(Path(s.cfg["out"]) / "metrics.jsonl")]
    assert losses["split"] == pytest.approx(losses["whole"], rel=1e-5)
    assert losses["whole"][2] < losses["whole"][0]           # and it did train


def test_early_stopping_and_general_mix(tmp_path, tiny, data):
    general = tmp_path / "general.jsonl"
    write_jsonl(general, [{**r, "id": "g-" + r["id"]} for r in sample_records()])
    y = config(tmp_path, tiny, data, max_steps=8, eval_every=1, lr=1e-7, early_stopping_patience=2,
               early_stopping_min_delta=0.01, lora={"use_dora": True})
    r = CliRunner().invoke(main, ["sft", str(y), "--general", str(general), "--mix", "1:1"])
    assert r.exit_code == 0, (r.output, r.exc_info)
    out = tmp_path / "out"
    stop = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "early_stop"]
    assert stop and stop[0]["step"] == 3 and stop[0]["best_step"] == 1
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "early stopped" and man["steps"] == 3 and man["data"]["general_examples"] > 0
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["use_dora"] is True
