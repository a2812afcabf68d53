"""Generation, the cache, adapters, log-likelihood and CMMLU with the real SmolLM2-135M-Instruct
(a handful of items each)."""
from __future__ import annotations

import csv
import json

import pytest

from evalkit.auto import run_auto
from evalkit.cmmlu import build_prompt, load_subject, run_cmmlu
from evalkit.generate import PrefixScorer, load_model

pytestmark = pytest.mark.slow

DATA = [
    {"id": "g1", "task": "general", "prompt": "What is the capital of France? Answer in one sentence.",
     "reference": "The capital of France is Paris."},
    {"id": "g2", "task": "medical", "prompt": "发烧了应该怎么办？", "reference": "多喝水，注意休息，体温超过38.5度可以服用退烧药。"},
    {"id": "c1", "task": "choice", "prompt": "Which planet is known as the Red Planet?\nA. Venus\nB. Mars\nC. Jupiter\n"
     "D. Saturn\nAnswer with the letter.", "answer": "B", "choices": ["Venus", "Mars", "Jupiter", "Saturn"]},
]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "eval.jsonl"
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DATA), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def adapter_dir(model_dir, tmp_path_factory):
    """A real LoRA adapter (random, non-zero B so it changes the outputs), saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def _cfg(tmp_path, data_file, model_dir, **kw):
    return {"data": str(data_file), "model": str(model_dir), "out": str(tmp_path / kw.pop("name", "run")),
            "cache": str(tmp_path / "gen.sqlite"), "bootstrap": 50, "threads": 1, "progress": False,
            "generation": {"max_new_tokens": 12, "batch_size": 2}, **kw}


def test_generates_once_then_reads_the_cache_and_an_adapter_is_a_new_key(tmp_path, data_file, model_dir, adapter_dir):
    first = run_auto(_cfg(tmp_path, data_file, model_dir), log=lambda m: None)
    assert first["manifest"]["generation"]["generated"] == 3 and first["manifest"]["generation"]["cached"] == 0
    preds = {r["id"]: r["prediction"] for r in first["items"]}
    assert "paris" in preds["g1"].lower()                    # the real model answers this one
    assert all(isinstance(p, str) and p for p in preds.values())
    assert first["items"][2]["extracted"] in ("A", "B", "C", "D", None)

    again = run_auto(_cfg(tmp_path, data_file, model_dir, name="again"), log=lambda m: None)
    assert again["manifest"]["generation"]["generated"] == 0 and again["manifest"]["generation"]["cached"] == 3
    assert {r["id"]: r["prediction"] for r in again["items"]} == preds

    tuned = run_auto(_cfg(tmp_path, data_file, model_dir, name="tuned", adapter=str(adapter_dir)), log=lambda m: None)
    gen = tuned["manifest"]["generation"]
    assert gen["generated"] == 3 and gen["adapter"] == str(adapter_dir) and len(gen["adapter_fingerprint"]) == 20
    assert {r["id"]: r["prediction"] for r in tuned["items"]} != preds


def test_loglik_choice_mode_in_auto(tmp_path, data_file, model_dir):
    res = run_auto(_cfg(tmp_path, data_file, model_dir, choice_mode="loglik", metrics=["choice"]), log=lambda m: None)
    (row,) = [r for r in res["items"] if r["id"] == "c1"]
    assert set(row["logprobs"]) == set("ABCD")
    assert row["extracted"] == max(row["logprobs"], key=row["logprobs"].get)
    assert "loglik" in res["summary"]["choice_acc"]["signature"]


@pytest.fixture(scope="module")
def cmmlu_dir(shared_data, tmp_path_factory):
    """A CMMLU-format folder with two real subjects: 2 dev and 3 test questions each."""
    root = tmp_path_factory.mktemp("cmmlu")
    for split, n in (("dev", 2), ("test", 3)):
        (root / split).mkdir()
        for subject in ("clinical_knowledge", "traditional_chinese_medicine"):
            with open(shared_data / "cmmlu" / split / f"{subject}.csv", encoding="utf-8") as f:
                lines = f.read().splitlines()[: n + 1]
            (root / split / f"{subject}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_prefix_cache_gives_the_same_logprobs_and_text(cmmlu_dir, model_dir):
    lm = load_model(str(model_dir), threads=1)
    shots = load_subject(cmmlu_dir, "clinical_knowledge", "dev")[:1]
    q = load_subject(cmmlu_dir, "clinical_knowledge", "test")[0]
    prefix, ctx = build_prompt("clinical_knowledge", shots, q)
    cached, plain = PrefixScorer(lm, prefix), PrefixScorer(lm, "")
    assert cached.logprobs(ctx, list("ABCD")) == pytest.approx(plain.logprobs(prefix + ctx, list("ABCD")), abs=1e-3)
    assert cached.greedy(ctx, 6) == plain.greedy(prefix + ctx, 6)
    assert cached.cache_hits == 2 and cached.cache_misses == 0
    # multi-token continuations are summed token by token
    two = cached.logprobs(ctx, ["A. " + q["A"], "B. " + q["B"]])
    assert two == pytest.approx(plain.logprobs(prefix + ctx, ["A. " + q["A"], "B. " + q["B"]]), abs=1e-3)


@pytest.mark.parametrize("mode", ["loglik", "generate"])
def test_cmmlu_both_modes(cmmlu_dir, model_dir, tmp_path, mode):
    res = run_cmmlu({"data_dir": cmmlu_dir, "subjects": None, "model": str(model_dir), "adapter": None, "mode": mode,
                     "shots": 2, "limit": None, "max_new_tokens": 6, "out": tmp_path / mode, "threads": 1,
                     "bootstrap": 50, "seed": 0, "progress": False})
    rows = [json.loads(line) for line in open(tmp_path / mode / "items.jsonl", encoding="utf-8")]
    assert len(rows) == 6 and {r["task"] for r in rows} == {"clinical_knowledge", "traditional_chinese_medicine"}
    gold = {}
    for subject in ("clinical_knowledge", "traditional_chinese_medicine"):
        with open(cmmlu_dir / "test" / f"{subject}.csv", encoding="utf-8") as f:
            gold.update({f"{subject}-{i}": r["Answer"] for i, r in enumerate(csv.DictReader(f))})
    assert {r["id"]: r["answer"] for r in rows} == gold           # answers stay aligned with questions
    assert all(r["correct"] == (r["extracted"] == r["answer"]) for r in rows)
    check = json.loads((tmp_path / mode / "cmmlu.json").read_text(encoding="utf-8"))["all"]
    assert sum(check["gold_letters"].values()) == 6 and sum(check["predicted_letters"].values()) == 6
    assert 0 <= check["chance_accuracy_given_letters"] <= 1 and 0 < check["p_value_vs_chance"] <= 1
    assert res["manifest"]["prefix_cache"]["hits"] == 6
    if mode == "loglik":
        assert all(set(r["logprobs"]) == set("ABCD") for r in rows)
