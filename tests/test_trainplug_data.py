"""trainplug data: chat-template masks, text records, record errors, config checks, inspect."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from curate.config import ConfigError
from trainplug.config import load_config
from trainplug.data import DataError, encode_dialogue, encode_records, encode_text, split_eval
from trainplug.testing import sample_records


@pytest.fixture(scope="module")
def tok(model_dir):
    from trainplug.data import load_tokenizer
    return load_tokenizer(model_dir)


def learned_text(tok, ex) -> list[str]:
    """Decoded runs of learned tokens."""
    runs, cur = [], []
    for t, m in zip(ex.ids.tolist(), ex.mask.tolist()):
        if m:
            cur.append(t)
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    return runs + ([tok.decode(cur)] if cur else [])


DIALOGUE = {"id": "r1", "source": "t", "messages": [
    {"role": "system", "content": "你是医生。"},
    {"role": "user", "content": "头痛怎么办？"}, {"role": "assistant", "content": "先休息，多喝水。"},
    {"role": "user", "content": "还会发烧。"}, {"role": "assistant", "content": "体温超过38.5度请就医 ok"}]}


def test_all_assistant_turns_are_learned_and_nothing_else(tok):
    ex = encode_dialogue(DIALOGUE, tok)
    assert learned_text(tok, ex) == ["先休息，多喝水。<|im_end|>", "体温超过38.5度请就医 ok<|im_end|>"]
    rendered = tok.decode(ex.ids.tolist())
    assert "你是医生。" in rendered and "头痛怎么办？" in rendered   # prompts are in the input, not learned


def test_last_assistant_only(tok):
    ex = encode_dialogue(DIALOGUE, tok, last_only=True)
    assert learned_text(tok, ex) == ["体温超过38.5度请就医 ok<|im_end|>"]


def test_text_record_learns_every_token_in_chunks(tok):
    text = "高血压是一种常见的慢性病。" * 20
    exs = encode_text({"id": "doc", "text": text}, tok, max_len=64)
    assert [e.rid for e in exs][:2] == ["doc", "doc#1"] and all(len(e) <= 64 for e in exs)
    assert all(e.mask.all() and e.kind == "text" for e in exs)
    assert tok.decode([t for e in exs for t in e.ids.tolist()]) == text + "<|im_end|>"


def test_no_trainable_token_is_an_error_naming_the_record(tok):
    cfg = load_config(None, overrides={"data": "x", "max_seq_len": 24}, check_paths=False)
    rec = {"id": "long-prompt-7", "source": "med.csv", "messages": [
        {"role": "user", "content": "我最近总是头晕，" * 20}, {"role": "assistant", "content": "请测血压。"}]}
    with pytest.raises(DataError, match="long-prompt-7.*med.csv.*no trainable token"):
        encode_records([rec], tok, cfg)
    # overlong: drop keeps the run going and lists the record
    events = []
    assert encode_records([rec], tok, {**cfg, "overlong": "drop"}, events) == []
    assert events == [{"event": "dropped_overlong", "record": "long-prompt-7", "tokens": events[0]["tokens"], "max_seq_len": 24}]


def test_eval_split_is_seeded_and_order_independent():
    recs = sample_records(4)
    tr1, ev1 = split_eval(recs, 0.1, 100, seed=3)
    tr2, ev2 = split_eval(list(reversed(recs)), 0.1, 100, seed=3)
    assert {r["id"] for r in ev1} == {r["id"] for r in ev2} and len(ev1) == int(len(recs) * 0.1)
    assert not {r["id"] for r in ev1} & {r["id"] for r in tr1}
    assert {r["id"] for r in split_eval(recs, 0.1, 100, seed=4)[1]} != {r["id"] for r in ev1}


def test_bad_config_lists_every_problem(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("data: nowhere.parquet\nmethod: lorra\nmix: 1:5\nbatch_size: 3\nlora: {r: 0, alfa: 2}\n"
                 "guard: {spike_factor: 0.5}\nthreads: 0\nnew_tokens: {warmup_batch: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(str(y))
    msg = str(e.value)
    for needle in ("batch_size: unknown key", "method: 'lorra'", "base-60", "lora.alfa: unknown option",
                   "lora.r: must be a positive integer", "guard.spike_factor", "data: ", "does not exist",
                   "mix: a ratio needs general data", "threads: expected a positive integer",
                   "new_tokens.warmup_batch: must be at least 1"):
        assert needle in msg, needle


def test_qlora_without_cuda_is_a_clear_error(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        load_config(None, overrides={"data": "x", "method": "qlora"}, check_paths=False)


def test_method_defaults():
    full = load_config(None, overrides={"data": "x", "method": "full"}, check_paths=False)
    assert full["lr"] <= 2e-5 and full["max_grad_norm"] == 1.0
    prefix = load_config(None, overrides={"data": "x", "method": "prefix"}, check_paths=False)
    assert prefix["packing"] is False   # prefix key/values are per row


def test_inspect_shows_masked_and_trained_spans(tmp_path, model_dir):
    from curate.writing import write_jsonl
    from trainplug.cli import main
    data = tmp_path / "d.jsonl"
    write_jsonl(data, [DIALOGUE])
    r = CliRunner().invoke(main, ["inspect", "--data", str(data), "--model", str(model_dir), "--plain"])
    assert r.exit_code == 0, r.output
    assert "{+先休息，多喝水。<|im_end|>+}" in r.output and "{+体温超过38.5度请就医 ok<|im_end|>+}" in r.output
    assert "{+" not in r.output.split("头痛怎么办")[0].split("\n", 1)[1]   # system/user text is not marked
    r = CliRunner().invoke(main, ["inspect", "--data", str(data), "--model", str(model_dir), "--index", "5"])
    assert r.exit_code != 0 and "has 1 records" in r.output
