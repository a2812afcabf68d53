"""evalkit's fast metrics give sacrebleu's and rouge-score's numbers, item by item, on real text."""
from __future__ import annotations

import csv
import json
import random
from collections import Counter

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from rouge_score.rouge_scorer import _lcs_table
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

from evalkit.metrics import bleu, chrf, exact_match, normalize_answer, rouge
from evalkit.ngrams import _chunk_counts, lcs_length, match_counts
from evalkit.tokenize import CjkTokenizer, FastTokenizer13a, FastTokenizerZh, default_bleu_tokenizer

EDGE = [("", "参考答案"), ("预测", ""), ("", ""), ("模型 GPT4 很强", "模型 GPT4 很弱"), ("A", "A"),
        ("Hello, World. 3.5-4 mg/kg!", "hello world 3.5 - 4mg/kg"), ("发烧38.5℃，可以吃布洛芬吗？", "体温38.5度可服用布洛芬。"),
        ("  前后有空格  ", "前后有空格"), ("全角ＡＢＣ１２３，。", "ABC123,."), ("x\u3000y", "x y")]


def _medical_pairs(shared_data, n=300, seed=0):
    path = shared_data / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(path, encoding="gb18030", errors="replace", newline="") as f:
        answers = [r["answer"].strip() for r in csv.DictReader(f) if r["answer"].strip()]
    rng = random.Random(seed)
    hyps, refs = [], []
    for i in range(n):
        ref = answers[i]
        kind = i % 4
        if kind == 0:
            hyp = answers[rng.randrange(len(answers))]
        elif kind == 1:
            other = answers[rng.randrange(len(answers))]
            hyp = ref[: len(ref) // 2] + other[len(other) // 2:]
        elif kind == 2:
            chars = list(ref)
            for _ in range(len(chars) // 6):
                chars[rng.randrange(len(chars))] = rng.choice(ref)
            hyp = "".join(chars)
        else:
            hyp = ref
        hyps.append(hyp)
        refs.append(ref)
    return hyps, refs


def _english_pairs(shared_data, n=120):
    data = json.loads((shared_data / "alpaca_en" / "alpaca_en_00000-03252.json").read_text(encoding="utf-8"))
    outs = [d["output"] for d in data if d.get("output", "").strip()][: 2 * n]
    return outs[:n], outs[n:]


def test_fast_sacrebleu_tokenizers_equal_sacrebleu_on_every_code_point():
    # every code point of the BMP, every 61st above it (sacrebleu's ranges all lie in the BMP)
    points = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF] + list(range(0x10000, 0x110000, 61))
    lines = []
    for start in range(0, len(points), 400):
        chars = [chr(c) for c in points[start:start + 400]]
        # neighbours that trigger the '.', ',' and '-' rules and the CJK spacing
        lines.append("a" + "1.".join(chars[:130]) + ",x-" + " ".join(chars[130:260]) + "中" + "".join(chars[260:]))
    lines += ["", " ", "-\n&quot;<skipped>&amp; ok", "3.5-4 mg/kg, 1,000.", "模型 GPT4 很强！"]
    assert FastTokenizerZh().batch(lines) == [TokenizerZh()(x) for x in lines]
    assert FastTokenizer13a().batch(lines) == [Tokenizer13a()(x) for x in lines]


def test_bleu_and_chrf_equal_sacrebleu_on_real_chinese(shared_data):
    hyps, refs = _medical_pairs(shared_data, n=160)
    hyps += [h for h, _ in EDGE]
    refs += [r for _, r in EDGE]
    B, C = bleu(hyps, [[r] for r in refs]), chrf(hyps, [[r] for r in refs])
    assert "tok:zh" in B.signature and "nrefs:1" in B.signature and "version:" in B.signature
    sb, sc = BLEU(tokenize="zh", effective_order=True), CHRF()
    for i, (h, r) in enumerate(zip(hyps, refs)):
        assert B.item_scores[i] == sb.sentence_score(h, [r]).score, (h, r)
        assert C.item_scores[i] == sc.sentence_score(h, [r]).score, (h, r)
    assert B.score() == sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    assert C.score() == sacrebleu.corpus_chrf(hyps, [refs]).score
    # the stored statistics are sacrebleu's own
    assert B.stats.tolist() == BLEU(tokenize="zh")._extract_corpus_statistics(hyps, [refs])
    assert C.stats.tolist() == CHRF()._extract_corpus_statistics(hyps, [refs])


def test_bleu_picks_13a_for_english_and_equals_sacrebleu(shared_data):
    hyps, refs = _english_pairs(shared_data)
    assert default_bleu_tokenizer(refs) == "13a"
    assert default_bleu_tokenizer(["体温38.5度可服用布洛芬。"]) == "zh"
    B = bleu(hyps, [[r] for r in refs])
    assert "tok:13a" in B.signature
    assert B.score() == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert list(B.item_scores) == [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)]


def test_multiple_references_follow_sacrebleu_and_rouge_score(shared_data):
    hyps, refs = _medical_pairs(shared_data, n=60, seed=3)
    multi = [[r, refs[(i + 7) % len(refs)]] if i % 2 else [r] for i, r in enumerate(refs)]
    B, C, R = bleu(hyps, multi), chrf(hyps, multi), rouge(hyps, multi)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CjkTokenizer())
    for i, (h, rs) in enumerate(zip(hyps, multi)):
        assert B.item_scores[i] == BLEU(tokenize="zh", effective_order=True).sentence_score(h, rs).score
        assert C.item_scores[i] == CHRF().sentence_score(h, rs).score
        s = scorer.score_multi(rs, h)
        for m in ("rouge1", "rouge2", "rougeL"):
            assert tuple(R[m].stats[i]) == (s[m].fmeasure, s[m].precision, s[m].recall)
    assert "nrefs:var" in B.signature


def test_rouge_equals_rouge_score_with_the_same_tokenizer(shared_data):
    zh_h, zh_r = _medical_pairs(shared_data, n=200, seed=1)
    en_h, en_r = _english_pairs(shared_data, n=60)
    hyps = zh_h + en_h + [h for h, _ in EDGE]
    refs = zh_r + en_r + [r for _, r in EDGE]
    R = rouge(hyps, [[r] for r in refs])
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CjkTokenizer())
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = scorer.score(r, h)
        for m in ("rouge1", "rouge2", "rougeL"):
            assert tuple(R[m].stats[i]) == (s[m].fmeasure, s[m].precision, s[m].recall), (m, h, r)
            assert R[m].item_scores[i] == s[m].fmeasure
    assert R["rougeL"].score() == pytest.approx(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]))
    assert "tok:cjk" in R["rougeL"].signature and "rouge-score:" in R["rougeL"].signature


def test_cjk_tokenizer_fixes_rouge_scores_default_on_chinese():
    a, b = "模型 GPT4 很强", "模型 GPT4 很弱"
    assert rouge_scorer.RougeScorer(["rouge1"]).score(a, b)["rouge1"].fmeasure == 1.0   # the stock failure
    assert CjkTokenizer().tokenize(a) == ["模", "型", "gpt4", "很", "强"]
    assert rouge([b], [[a]])["rouge1"].item_scores[0] == pytest.approx(0.8)
    assert rouge(["今天很好"], [["明日下雨"]])["rougeL"].item_scores[0] == 0.0


def test_vectorized_token_ids_equal_tokenize(shared_data):
    hyps, refs = _medical_pairs(shared_data, n=200, seed=5)
    rng = random.Random(0)
    texts = hyps + refs + [h for h, _ in EDGE] + [
        "".join(rng.choice("aB1 中,.!\n\u3000Éé-Z9") for _ in range(rng.randrange(0, 20))) for _ in range(500)]
    tok, vocab = CjkTokenizer(), {}
    all_ids = tok.ids_batch(texts, vocab)
    inverse = {v: k for k, v in vocab.items()}
    for text, ids in zip(texts, all_ids):
        assert [chr(i) if i < 0x110000 else inverse[i - 0x110000] for i in ids.tolist()] == tok.tokenize(text)


def _brute(h, r, n):
    ch = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
    cr = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
    return sum(min(c, cr[g]) for g, c in ch.items())


@pytest.mark.parametrize("force_ranks", [False, True])
def test_match_counts_equal_counter_intersection(force_ranks):
    rng = random.Random(7)
    hyps, refs = [], []
    for _ in range(600):
        vocab = rng.choice([2, 3, 50, 10**9, 2**40])
        hyps.append(np.array([rng.randrange(vocab) for _ in range(rng.randrange(0, 40))], dtype=np.int64))
        refs.append(np.array([rng.randrange(vocab) for _ in range(rng.randrange(0, 40))], dtype=np.int64))
    orders = (1, 2, 3, 4, 5, 6)
    if force_ranks:
        got = _chunk_counts(hyps, refs, np.array([len(h) for h in hyps]), np.array([len(r) for r in refs]), orders,
                            force_ranks=True)
    else:
        got = match_counts(hyps, refs, orders)
    for i, (h, r) in enumerate(zip(hyps, refs)):
        for n in orders:
            assert got[n][i] == _brute(h.tolist(), r.tolist(), n)


def test_lcs_length_equals_rouge_scores_table():
    rng = random.Random(3)
    for _ in range(400):
        vocab = rng.choice([2, 4, 30])
        a = [rng.randrange(vocab) for _ in range(rng.randrange(0, 90))]
        b = [rng.randrange(vocab) for _ in range(rng.randrange(0, 90))]
        assert lcs_length(a, b) == (_lcs_table(a, b)[-1][-1] if a and b else 0)


def test_exact_match_and_contains_normalize_chinese_and_english():
    assert normalize_answer(" 北京 市。") == "北京市"
    assert normalize_answer("Ｐａｒｉｓ!") == "paris"
    r = exact_match(["北京市", "答案是北京。", "The answer is Paris.", "上海"], [["北京 市"], ["北京"], ["paris"], ["北京"]])
    assert r["em"].item_scores.tolist() == [1, 0, 0, 0]
    assert r["contains"].item_scores.tolist() == [1, 1, 1, 0]
    assert r["em"].score() == 0.25


def test_jieba_words_for_rouge_equal_rouge_score(shared_data):
    pytest.importorskip("jieba")
    from evalkit.tokenize import JiebaTokenizer
    hyps, refs = _medical_pairs(shared_data, n=40, seed=9)
    R = rouge(hyps, [[r] for r in refs], tokenizer="jieba")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=JiebaTokenizer())
    for i, (h, r) in enumerate(zip(hyps, refs)):
        s = scorer.score(r, h)
        assert tuple(R[m].item_scores[i] for m in ("rouge1", "rouge2", "rougeL")) == \
            (s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure)
    assert "tok:jieba" in R["rougeL"].signature
