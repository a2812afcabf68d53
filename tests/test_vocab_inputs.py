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
