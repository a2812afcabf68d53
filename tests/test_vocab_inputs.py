"""curate vocab beyond the default base: a sentencepiece (Llama-style, byte fallback) base gets the
protobuf merge; curated sets are read as curated; the Python API."""
from __future__ import annotations

import io
import json
import random

import pytest

from curate.schema import make_record, to_frame
from curate.vocab import expand_vocab
from curate.vocab.corpus import is_cjk
from curate.writing import write_parquet


def _medical_records(shared_data, n):
    import csv
    path = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(path, encoding="gb18030", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    return [make_record(f"m{i}", str(path), messages=[{"role": "user", "content": r["ask"]},
                                                      {"role": "assistant", "content": r["answer"]}],
                        task=r["department"], lang="zh") for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def curated(shared_data, tmp_path_factory):
    """A curated set as `curate run` writes it (schema Parquet)."""
    path = tmp_path_factory.mktemp("cur") / "curated.parquet"
    write_parquet(path, to_frame(_medical_records(shared_data, 1200)))
    return path


@pytest.fixture(scope="module")
def spm_base(shared_data, tmp_path_factory):
    """A real sentencepiece BPE tokenizer with byte fallback (Llama-2 style), trained on English
    alpaca, saved as a transformers LlamaTokenizer folder: tokenizer.model + tokenizer_config.json."""
    import sentencepiece as spm
    english = [r["instruction"] + " " + r["output"]
               for r in json.loads((shared_data / "alpaca_en" / "alpaca_en_00000-03252.json").read_text())]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(english), model_writer=model, model_type="bpe",
                                   vocab_size=1000, byte_fallback=True, character_coverage=1.0,
                                   unk_id=0, bos_id=1, eos_id=2, num_threads=2, minloglevel=2)
    d = tmp_path_factory.mktemp("spbase")
    (d / "tokenizer.model").write_bytes(model.getvalue())
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    return d, english


def test_sentencepiece_base_gets_the_proto_merge(spm_base, curated, tmp_path):
    from sentencepiece import SentencePieceProcessor
    from transformers import AutoTokenizer
    base_dir, english = spm_base
    out = tmp_path / "sp-tok"
    report = expand_vocab([str(curated)], out, base=str(base_dir), size=600, heldout=0.1, progress=False)
    assert report["base"]["type"] == "sentencepiece" and 0 < report["added"] <= 600
    base, new = AutoTokenizer.from_pretrained(str(base_dir)), AutoTokenizer.from_pretrained(str(out))
    assert len(new) == len(base) + report["added"]
    # The merged proto is shipped too, and sentencepiece itself reads it with the pieces appended.
    sp = SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert sp.get_piece_size() == len(new)
    assert [sp.id_to_piece(i) for i in range(len(base), len(new))] == [t["token"] for t in report["new_tokens"]]
    assert all(all(map(is_cjk, t["token"])) for t in report["new_tokens"])
    # English keeps its ids; Chinese reads in fewer tokens; round trip exact.
    texts = english[:800]
    assert base(texts)["input_ids"] == new(texts)["input_ids"]
    h = report["heldout"]
    assert h["after"]["tokens_per_char"] < 0.7 * h["before"]["tokens_per_char"]
    rng = random.Random(3)
    mixed = [rng.choice(texts)[:80] + " 患者胰岛素抵抗，心肌梗死。" + rng.choice(["😀", "", "def f(): pass"]) for _ in range(200)]
    assert all(new.decode(ids, skip_special_tokens=True) == t for t, ids in zip(mixed, new(mixed)["input_ids"]))


def test_curated_input_and_python_api(curated, model_dir, tmp_path):
    logs = []
    report = expand_vocab([str(curated)], tmp_path / "tok", base=str(model_dir), size=400, heldout=0.1,
                          terms=["高血压", "乙肝"], progress=False, log=logs.append)
    assert report["inputs"][str(curated)] == {"format": "curated", "read": 1200, "rejected": 0}
    assert report["heldout"]["before"]["texts"] + report["train"]["texts"] == 1200
    assert [t["term"] for t in report["terms"]] == ["高血压", "乙肝"]
    assert any("held-out" in m for m in logs)
    # A different size is a different run: it rebuilds, and the folder holds the new tokenizer.
    again = expand_vocab([str(curated)], tmp_path / "tok", base=str(model_dir), size=200, heldout=0.1,
                         terms=["高血压"], progress=False)
    assert again["key"] != report["key"] and again["added"] <= 200
    assert json.loads((tmp_path / "tok" / "vocab_report.json").read_text())["added"] == again["added"]


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


@pytest.fixture(scope="module")
def llama3_style_base(model_dir, tmp_path_factory):
    """SmolLM2's vocabulary and merges under Llama-3/Qwen-style settings: a Split regex before a
    regex-less ByteLevel (a nested pre-tokenizer; punctuation joins the letters after it), and
    ``ignore_merges`` (a word found whole in the vocabulary skips the merges)."""
    d = tmp_path_factory.mktemp("llama3style")
    for f in ("tokenizer_config.json", "chat_template.jinja"):
        if (model_dir / f).exists():
            (d / f).write_bytes((model_dir / f).read_bytes())
    tj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    tj["model"]["ignore_merges"] = True
    (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    return d


def test_llama3_style_byte_level_base(llama3_style_base, curated, tmp_path, shared_data):
    from transformers import AutoTokenizer
    report = expand_vocab([str(curated)], tmp_path / "tok", base=str(llama3_style_base), size=500, heldout=0.1,
                          progress=False)
    assert report["base"]["type"] == "byte-level BPE" and report["unreachable"] == []
    base, new = AutoTokenizer.from_pretrained(str(llama3_style_base)), AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert new.backend_tokenizer.model.ignore_merges
    h = report["heldout"]
    assert h["after"]["tokens_per_char"] < 0.75 * h["before"]["tokens_per_char"]
    english = [r["instruction"] + " " + r["output"]
               for r in json.loads((shared_data / "alpaca_en" / "alpaca_en_03252-06382.json").read_text())[:800]]
    assert base(english)["input_ids"] == new(english)["input_ids"]
    # Punctuation + Chinese is one pre-token here ("，患者"); the new pieces still form inside it.
    assert len(new.encode("，患者", add_special_tokens=False)) < len(base.encode("，患者", add_special_tokens=False))
    mixed = ["，患者胰岛素抵抗。" + e[:60] + "😀１２３" for e in english[:300]]
    assert all(new.decode(ids) == t for t, ids in zip(mixed, new(mixed, add_special_tokens=False)["input_ids"]))
