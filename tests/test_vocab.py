"""curate vocab: Chinese vocabulary expansion of the real SmolLM2 tokenizer (byte-level BPE), trained
small on real medical dialogue (GB18030 CSV) and alpaca_zh, checked for its invariants."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main as curate_main
from curate.vocab import expand_vocab
from curate.vocab.bytelevel import merge_is_safe
from curate.vocab.corpus import cjk_runs, is_cjk

ROOT = Path(__file__).resolve().parent.parent
SIZE = 1200


# -- units that need no data ---------------------------------------------------------------------

def test_cjk_runs_split_by_class_and_skip_other_scripts():
    assert list(cjk_runs("患者：胰岛素抵抗abc１２３，CT检查 ひらがな“引号”")) == \
        ["患者", "：", "胰岛素抵抗", "１２３", "，", "检查", "引号"]
    assert not any(map(is_cjk, "“”—…é😀ひカ한\u3000 "))


@pytest.mark.parametrize("text,safe", [
    ("胰", True), ("胰岛", True), ("。", True), ("，", True), ("￥", True),
    ("é", False), ("😀", False), ("ひ", False), ("“", False), ("a胰", False),
])
def test_merge_is_safe_whole_characters(text, safe):
    assert merge_is_safe(text.encode()) is safe


def test_merge_is_safe_partial_characters():
    assert merge_is_safe("胰".encode()[:2])          # E8 83: U+80C0..U+80FF, all Han
    assert merge_is_safe("一".encode()[:2])          # E4 B8: U+4E00..U+4E3F
    assert not merge_is_safe("。".encode()[:2])      # E3 80 also starts U+3000, the ideographic space
    assert not merge_is_safe("ひ".encode()[:2])      # E3 81: hiragana
    assert not merge_is_safe("胰".encode()[1:])      # starts inside a character
    assert not merge_is_safe("ｱ".encode()[:2])       # EF BD: fullwidth forms mixed with halfwidth katakana


# -- a real expansion, small -------------------------------------------------------------------

@pytest.fixture(scope="module")
def expanded(shared_data, tmp_path_factory, model_dir):
    """1,200 tokens learned from 1,500 medical dialogues (re-encoded GB18030 CSV) + 1 alpaca_zh file."""
    tmp = tmp_path_factory.mktemp("vocab")
    src = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(src, encoding="gb18030", newline="") as f:
        rows = list(csv.DictReader(f))
    med = tmp / "medical.csv"
    with open(med, "w", encoding="gb18030", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:1500])
    alpaca = shared_data / "alpaca_zh" / "alpaca_zh_00000-03252.json"
    out = tmp / "tok"
    result = CliRunner().invoke(curate_main, ["vocab", "-i", str(med), "--map", "user=ask,assistant=answer",
                                              "-i", str(alpaca), "--map", "auto", "--base", str(model_dir),
                                              "--size", str(SIZE), "--heldout", "0.1", "--out", str(out),
                                              "--no-progress"])
    assert result.exit_code == 0, result.output
    return {"out": out, "med": med, "alpaca": alpaca, "output": result.output,
            "report": json.loads((out / "vocab_report.json").read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def toks(expanded, model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(model_dir)), AutoTokenizer.from_pretrained(str(expanded["out"]))


def test_folder_loads_and_is_one_bpe_model(expanded, toks, model_dir):
    base, new = toks
    report = expanded["report"]
    assert 0 < report["added"] <= SIZE
    assert len(new) == len(base) + report["added"]
    assert (expanded["out"] / "vocab_report.md").read_text(encoding="utf-8").startswith("# Vocabulary expansion")
    assert "tokens/char" in expanded["output"]
    tj = json.loads((expanded["out"] / "tokenizer.json").read_text(encoding="utf-8"))
    bj = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    # New pieces live in the BPE model (vocab + merges), not in added_tokens matched before it.
    assert tj["added_tokens"] == bj["added_tokens"]
    assert tj["model"]["type"] == "BPE" and len(tj["model"]["vocab"]) == len(bj["model"]["vocab"]) + report["added"]
    assert tj["model"]["merges"][:len(bj["model"]["merges"])] == bj["model"]["merges"]
    assert len(tj["model"]["merges"]) > len(bj["model"]["merges"])
    assert new.chat_template == base.chat_template and new.eos_token == base.eos_token


def test_new_ids_appended_after_old_ones(toks, expanded):
    base, new = toks
    old_vocab, new_vocab = base.get_vocab(), new.get_vocab()
    assert all(new_vocab[t] == i for t, i in old_vocab.items())
    added = sorted(i for t, i in new_vocab.items() if t not in old_vocab)
    assert added == list(range(len(base), len(new)))
    assert [t["id"] for t in expanded["report"]["new_tokens"]] == added


def test_every_added_token_is_produced_by_the_bpe(toks, expanded):
    _, new = toks
    added = expanded["report"]["new_tokens"]
    whole = [t for t in added if "\\x" not in t["token"]]     # partial characters are escaped as \xNN
    assert len(whole) > 0.8 * len(added)
    for t in whole:
        assert new.encode(t["token"], add_special_tokens=False) == [t["id"]], t["token"]
    assert expanded["report"]["unreachable"] == []
    # The rest are first-two-byte prefixes (merged left to right), each one shared by added characters.
    whole_bl = [new.convert_ids_to_tokens(t["id"]) for t in whole]
    for t in added:
        if t not in whole:
            bl = new.convert_ids_to_tokens(t["id"])
            assert len(bl) == 2 and any(w.startswith(bl) for w in whole_bl), t


def test_text_without_chinese_keeps_its_ids(toks, shared_data):
    base, new = toks
    english = [r["instruction"] + "\n" + r.get("input", "") + "\n" + r["output"]
               for r in json.loads((shared_data / "alpaca_en" / "alpaca_en_00000-03252.json").read_text())[:1500]]
    code = [p.read_text(encoding="utf-8") for p in sorted(ROOT.glob("curate/*.py"))]
    texts = [t for t in english + code if not any(map(is_cjk, t))]
    assert len(texts) > 1000
    assert base(texts, add_special_tokens=False)["input_ids"] == new(texts, add_special_tokens=False)["input_ids"]


def test_random_non_chinese_strings_keep_their_ids(toks):
    """The invariant for any text with no character from the Chinese blocks: Latin, accents, Greek,
    Cyrillic, kana, Hangul, emoji (4-byte, sharing continuation bytes with Chinese), General
    Punctuation, halfwidth katakana, the replacement character, whitespace of every kind."""
    base, new = toks
    rng = random.Random(7)
    pools = ["abcXYZ019 .,;:!?'\"()[]{}<>=+-*/\\_#@$%^&|~`", "éàüñçßøåœ", "αβγΩΣ", "абвгдЖЩ",
             "ぁあいうえおかきアイウエオ", "한국어가나다", "😀👍🏽🇨🇳🤖🧠", "“”‘’—–…•‰€£¥©®™", "ｱｲｳｴｵ",
             "\ufffd\u00a0\u2003\t\n\r ", "℃№½¼⅓→⇒∑√∞≈≠≤≥"]
    texts = ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    assert not any(is_cjk(c) for t in texts for c in t)
    assert base(texts, add_special_tokens=False)["input_ids"] == new(texts, add_special_tokens=False)["input_ids"]


def test_round_trip_mixed_strings(toks, expanded):
    _, new = toks
    with open(expanded["med"], encoding="gb18030", newline="") as f:
        chinese = [r["answer"] for r in csv.DictReader(f)][:300]
    rng = random.Random(11)
    others = ["def f(x):\n    return x ** 2  # 平方", "Hello, world!", "😀👍🏽", "  \t\n", "１２３ＡＢＣ", "ひらがな",
              "“引号”—…", "胰岛素抵抗 insulin resistance", "\ufffd", "<|im_end|>", "心肌梗死。😀"]
    texts = []
    for _ in range(1500):
        parts = [rng.choice(chinese)[rng.randint(0, 40):][:rng.randint(1, 60)] if rng.random() < 0.6
                 else rng.choice(others) for _ in range(rng.randint(1, 4))]
        texts.append(rng.choice(["", " ", "\n"]).join(parts))
    ids = new(texts, add_special_tokens=False)["input_ids"]
    bad = [t for t, i in zip(texts, ids) if new.decode(i) != t]
    assert bad == []
    assert sum(i >= expanded["report"]["first_new_id"] for row in ids for i in row) > 1000   # new tokens in use


def test_report_measures_held_out_gain_and_terms(expanded, toks):
    r = expanded["report"]
    before, after = r["heldout"]["before"], r["heldout"]["after"]
    assert before["texts"] > 50 and before["chars"] == after["chars"]
    assert after["tokens_per_char"] < 0.75 * before["tokens_per_char"]
    base, new = toks
    term = next(t for t in r["terms"] if t["term"] == "高血压")
    assert term["tokens_after"] == len(new.encode("高血压", add_special_tokens=False)) < term["tokens_before"]
    assert r["top_added"][0]["count"] >= r["top_added"][-1]["count"] > 0
    assert r["checks"]["round_trip_failures"] == 0 and r["checks"]["probes_changed"] == []
    assert r["inputs"][str(expanded["med"])] == {"format": "raw", "read": 1500, "rejected": 0}
    assert r["signature"].startswith("vocab|base:") and r["key"]


def test_rerun_is_a_no_op(expanded, model_dir):
    out = expanded["out"]
    stamp = (out / "tokenizer.json").stat().st_mtime_ns
    result = CliRunner().invoke(curate_main, ["vocab", "-i", str(expanded["med"]), "--map", "user=ask,assistant=answer",
                                              "-i", str(expanded["alpaca"]), "--map", "auto", "--base", str(model_dir),
                                              "--size", str(SIZE), "--heldout", "0.1", "--out", str(out),
                                              "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert (out / "tokenizer.json").stat().st_mtime_ns == stamp


def test_user_errors_are_clear_and_harmless(tmp_path, expanded, model_dir):
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    runner = CliRunner()
    r = runner.invoke(curate_main, ["vocab", "-i", str(expanded["med"]), "--out", str(keep), "--base", str(model_dir)])
    assert r.exit_code != 0 and "not a `curate vocab` output" in r.output
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]
    r = runner.invoke(curate_main, ["vocab", "-i", str(expanded["med"]), "--size", "0", "--heldout", "1.5",
                                    "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "size must be" in r.output and "heldout must be" in r.output
    r = runner.invoke(curate_main, ["vocab", "-i", str(expanded["med"]), "-i", str(expanded["alpaca"]),
                                    "--map", "user=ask", "--map", "auto", "--map", "auto", "--out", str(tmp_path / "o"),
                                    "--base", str(model_dir)])
    assert r.exit_code != 0 and "3 --map values for 2 --input" in r.output
    r = runner.invoke(curate_main, ["vocab", "-i", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "matches no readable file" in r.output
    assert not (tmp_path / "o").exists()
