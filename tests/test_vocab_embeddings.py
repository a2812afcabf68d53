"""trainplug.embeddings with the real SmolLM2-135M-Instruct and a real `curate vocab` tokenizer:
resize with subword-mean rows, the peft settings for the new rows, the embeddings-only warm-up,
and `trainplug sft --tokenizer DIR` end to end, then generation with the expanded model."""
from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from curate.schema import make_record
from curate.vocab import expand_vocab
from curate.writing import write_jsonl
from trainplug.embeddings import new_token_peft_kwargs, resize_embeddings, warmup_new_embeddings


@pytest.fixture(scope="module")
def medical(shared_data):
    path = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(path, encoding="gb18030", newline="") as f:
        rows = list(csv.DictReader(f))[:900]
    return [make_record(f"m{i}", str(path), messages=[{"role": "user", "content": r["ask"]},
                                                      {"role": "assistant", "content": r["answer"]}], lang="zh")
            for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def tok_dir(medical, model_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("vocab")
    write_jsonl(d / "curated.jsonl", medical)
    expand_vocab([str(d / "curated.jsonl")], d / "tok", base=str(model_dir), size=300, heldout=0.0, progress=False)
    return d / "tok"


@pytest.fixture(scope="module")
def expanded_model(model_dir, tok_dir):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    old = model.get_input_embeddings().weight.detach().clone()
    new_ids = resize_embeddings(model, tok_dir)
    return model, old, new_ids


def test_resize_gives_new_rows_the_mean_of_their_pieces(expanded_model, tok_dir):
    model, old, new_ids = expanded_model
    report = json.loads((tok_dir / "vocab_report.json").read_text(encoding="utf-8"))
    assert new_ids == [t["id"] for t in report["new_tokens"]] == list(range(old.shape[0], old.shape[0] + report["added"]))
    w = model.get_input_embeddings().weight.detach()
    assert w.shape[0] == old.shape[0] + len(new_ids) == model.config.vocab_size
    assert torch.equal(w[:old.shape[0]], old)                          # old rows untouched
    assert model.get_output_embeddings().weight.data_ptr() == w.data_ptr()   # still tied
    for t in report["new_tokens"][::37]:
        torch.testing.assert_close(w[t["id"]], old[t["base_ids"]].mean(dim=0))
    # A new token reads (input side) and scores (output side) like the mean of its pieces.
    assert new_token_peft_kwargs(model, new_ids) == {"trainable_token_indices": {"embed_tokens": new_ids}}
    assert new_token_peft_kwargs(model, new_ids, how="modules_to_save") == {"modules_to_save": ["embed_tokens"]}


def test_warmup_trains_only_the_new_rows(model_dir, tok_dir, medical):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    new_ids = resize_embeddings(model, tok_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts = [m["content"] for r in medical[:40] for m in r["messages"]]
    losses = warmup_new_embeddings(model, tok, texts, new_ids, steps=2, batch_size=2, seq_len=48, progress=False)
    assert len(losses) == 2 and all(x == x and x > 0 for x in losses)
    after = dict(model.named_parameters())
    assert set(after) == set(before)                                   # peft merged away, plain model again
    emb = "model.embed_tokens.weight"
    assert all(torch.equal(after[n].detach(), before[n]) for n in before if n != emb)
    assert torch.equal(after[emb][:new_ids[0]].detach(), before[emb][:new_ids[0]])
    assert not torch.equal(after[emb][new_ids].detach(), before[emb][new_ids])
    # Lazy update: a new row no warm-up text uses keeps its initial value (Adam would otherwise
    # push every row a step of ~lr per step from the softmax's gradient alone).
    used = {i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]}
    unused = [i for i in new_ids if i not in used]
    assert unused and len(unused) < len(new_ids)
    assert torch.equal(after[emb][unused].detach(), before[emb][unused])


@pytest.mark.slow
def test_trainplug_sft_with_the_expanded_tokenizer_then_generate(tmp_path, model_dir, tok_dir, medical):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainplug.cli import main as trainplug_main
    data = tmp_path / "curated.jsonl"
    short = [dict(r, messages=[{"role": m["role"], "content": m["content"][:50]} for m in r["messages"]])
             for r in medical[:60]]
    write_jsonl(data, short)
    cfg = {"data": str(data), "model": str(model_dir), "tokenizer": str(tok_dir), "max_seq_len": 128,
           "batch_tokens": 256, "overlong": "drop", "max_steps": 2, "save_every": 2, "eval_every": 0, "eval_at_start": False,
           "eval_fraction": 0.05, "eval_max": 4, "progress": False, "tensorboard": False,
           "new_tokens": {"train": "trainable_tokens", "warmup_steps": 1, "warmup_lr": 2e-3},
           "out": str(tmp_path / "out")}
    (tmp_path / "run.yaml").write_text(json.dumps(cfg), encoding="utf-8")
    r = CliRunner().invoke(trainplug_main, ["sft", str(tmp_path / "run.yaml")])
    assert r.exit_code == 0, r.output
    report = json.loads((tok_dir / "vocab_report.json").read_text(encoding="utf-8"))
    new_ids = [t["id"] for t in report["new_tokens"]]
    adapter = tmp_path / "out" / "adapter"
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    assert sorted(next(iter(acfg["trainable_token_indices"].values()))) == new_ids

    # Generation: the base grown the same way, the trained adapter (LoRA + new rows) on top.
    tok = AutoTokenizer.from_pretrained(str(adapter))
    assert len(tok) == report["vocab_size"]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    resize_embeddings(model, tok_dir)
    init_rows = model.get_input_embeddings().weight[new_ids].detach().clone()
    model = PeftModel.from_pretrained(model, str(adapter)).eval()
    trained_rows = model.get_input_embeddings()(torch.tensor(new_ids)).detach()
    assert not torch.allclose(trained_rows, init_rows)                # the new rows were trained
    prompt = tok.apply_chat_template([{"role": "user", "content": "高血压患者可以吃党参吗？"}],
                                     add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    assert (ids["input_ids"] >= new_ids[0]).any()                     # the prompt itself uses new tokens
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tok.eos_token_id)
    gen = out[0, ids["input_ids"].shape[1]:].tolist()
    assert len(gen) > 0 and max(gen) < len(tok)
    text = tok.decode(gen, skip_special_tokens=True)
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # Decoding agrees with the tokens' own bytes (what a streaming client joins token by token).
    from curate.vocab.bytelevel import from_bytelevel
    special = set(tok.all_special_tokens)
    joined = b"".join(from_bytelevel(t) for t in tok.convert_ids_to_tokens(gen) if t not in special)
    assert joined.decode("utf-8", errors="replace") == text
