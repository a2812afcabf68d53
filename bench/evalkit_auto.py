"""Benchmark for `evalkit auto` (issue 6), three workloads:

  text    10k Chinese pairs (~276 characters, real doctors' answers vs perturbed or other answers)
          scored with BLEU + chrF + ROUGE-1/2/L by evalkit, against the stock recipe in the same
          run (sacrebleu sentence_bleu/sentence_chrf and rouge_score.RougeScorer with the same CJK
          tokenizer), timed on a subset and extrapolated; ROUGE compared with rouge-score on every
          pair (--anchor-all) or on the subset.
  choice  the answer-letter extractor on tests/data/choice_answer_styles.jsonl.
  cmmlu   CMMLU medical subjects with the real SmolLM2-135M-Instruct on CPU, loglik and generate.

    .venv/bin/python bench/evalkit_auto.py text --pairs 10000 --anchor 1000 --anchor-all
    .venv/bin/python bench/evalkit_auto.py choice
    .venv/bin/python bench/evalkit_auto.py cmmlu --limit 50 --shots 5

Results go to bench/out/evalkit_auto_<workload>.json and the terminal.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SFTKIT_SHARED", ROOT.parent / "shared"))
OUT = ROOT / "bench" / "out"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}


def chinese_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """References: real answers (same department, joined to ~276 characters).  Hypotheses: a third
    each of (a) the reference with ~20% characters replaced, clauses dropped or swapped, (b) half
    of it followed by half of another answer, (c) another answer of the same department."""
    path = SHARED / "data" / "medical_dialogue" / "internal_medicine_5000-6000.gb18030.csv"
    with open(path, encoding="gb18030", errors="replace", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["answer"].strip()]
    by_dept: dict[str, list[str]] = {}
    for r in rows:
        by_dept.setdefault(r["department"], []).append(r["answer"].strip())
    rng = random.Random(seed)
    depts = [d for d in by_dept if len(by_dept[d]) >= 5]

    def long_answer(dept: str) -> str:
        text = ""
        while len(text) < 250:
            text += rng.choice(by_dept[dept])
        return text[:300]

    refs, hyps = [], []
    for i in range(n):
        dept = rng.choice(depts)
        ref = long_answer(dept)
        kind = i % 3
        if kind == 0:
            clauses = [c for c in ref.replace("。", "。|").replace("，", "，|").split("|") if c]
            if len(clauses) > 3 and rng.random() < 0.5:
                clauses.pop(rng.randrange(len(clauses)))
            if len(clauses) > 3:
                a, b = rng.sample(range(len(clauses)), 2)
                clauses[a], clauses[b] = clauses[b], clauses[a]
            chars = list("".join(clauses))
            for _ in range(len(chars) // 5):
                chars[rng.randrange(len(chars))] = rng.choice(ref)
            hyp = "".join(chars)
        elif kind == 1:
            other = long_answer(dept)
            hyp = ref[: len(ref) // 2] + other[len(other) // 2:]
        else:
            hyp = long_answer(dept)
        refs.append(ref)
        hyps.append(hyp)
    return hyps, refs


def bench_text(args) -> dict:
    import numpy as np
    import sacrebleu
    from rouge_score import rouge_scorer
    from evalkit.metrics import bleu, chrf, rouge
    from evalkit.tokenize import CjkTokenizer
    hyps, refs = chinese_pairs(args.pairs, args.seed)
    ref_lists = [[r] for r in refs]
    mean_len = sum(map(len, refs + hyps)) / (2 * len(refs))

    t = time.perf_counter()
    B = bleu(hyps, ref_lists)
    t_bleu = time.perf_counter() - t
    t = time.perf_counter()
    C = chrf(hyps, ref_lists)
    t_chrf = time.perf_counter() - t
    t = time.perf_counter()
    R = rouge(hyps, ref_lists)
    t_rouge = time.perf_counter() - t
    fast = t_bleu + t_chrf + t_rouge

    k = min(args.anchor, args.pairs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CjkTokenizer())
    t = time.perf_counter()
    anchor_rouge = [scorer.score(r, h) for h, r in zip(hyps[:k], refs[:k])]
    t_anchor_rouge = time.perf_counter() - t
    t = time.perf_counter()
    anchor_bleu = [sacrebleu.sentence_bleu(h, [r], tokenize="zh").score for h, r in zip(hyps[:k], refs[:k])]
    t_anchor_bleu = time.perf_counter() - t
    t = time.perf_counter()
    anchor_chrf = [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(hyps[:k], refs[:k])]
    t_anchor_chrf = time.perf_counter() - t
    scale = args.pairs / k
    anchor_total = (t_anchor_rouge + t_anchor_bleu + t_anchor_chrf) * scale

    checked = k
    if args.anchor_all and k < args.pairs:
        anchor_rouge += [scorer.score(r, h) for h, r in zip(hyps[k:], refs[k:])]
        checked = args.pairs
    rouge_mismatch = sum(
        (s[m].fmeasure, s[m].precision, s[m].recall) != tuple(R[m].stats[i])
        for i, s in enumerate(anchor_rouge) for m in ("rouge1", "rouge2", "rougeL"))
    bleu_mismatch = int(sum(a != b for a, b in zip(anchor_bleu, B.item_scores[:k])))
    chrf_mismatch = int(sum(a != b for a, b in zip(anchor_chrf, C.item_scores[:k])))
    t = time.perf_counter()
    corpus_bleu = sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    corpus_chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    t_corpus_stock = time.perf_counter() - t
    return {
        "pairs": args.pairs, "mean_chars": round(mean_len, 1),
        "evalkit_seconds": {"bleu": round(t_bleu, 2), "chrf": round(t_chrf, 2), "rouge1_2_L": round(t_rouge, 2),
                            "total": round(fast, 2)},
        "anchor_subset": k,
        "anchor_seconds_measured": {"rouge_score": round(t_anchor_rouge, 2), "sacrebleu_sentence_bleu": round(t_anchor_bleu, 2),
                                    "sacrebleu_sentence_chrf": round(t_anchor_chrf, 2)},
        "anchor_seconds_extrapolated_to_all_pairs": {"rouge_score": round(t_anchor_rouge * scale, 1),
                                                     "total": round(anchor_total, 1)},
        "rouge_pairs_per_second": {"evalkit": round(args.pairs / t_rouge, 1), "rouge_score": round(k / t_anchor_rouge, 1)},
        "speedup_total": round(anchor_total / fast, 1),
        "speedup_rouge": round(t_anchor_rouge * scale / t_rouge, 1),
        "equality": {"rouge_pairs_checked": checked, "rouge_values_different": int(rouge_mismatch),
                     "sentence_bleu_checked": k, "sentence_bleu_different": bleu_mismatch,
                     "sentence_chrf_checked": k, "sentence_chrf_different": chrf_mismatch,
                     "corpus_bleu": [B.score(), corpus_bleu], "corpus_chrf": [C.score(), corpus_chrf],
                     "stock_corpus_seconds": round(t_corpus_stock, 2)},
        "scores": {"bleu": B.score(), "chrf": C.score(), "rougeL": float(np.mean(R["rougeL"].item_scores))},
        "signatures": {"bleu": B.signature, "chrf": C.signature, "rougeL": R["rougeL"].signature},
    }


def bench_choice(args) -> dict:
    from evalkit.choice import extract_choice
    cases = [json.loads(line) for line in open(ROOT / "tests" / "data" / "choice_answer_styles.jsonl", encoding="utf-8")]
    wrong = [c for c in cases if extract_choice(c["text"], c["choices"]) != c["expected"]]
    zh = sum(any("\u4e00" <= ch <= "\u9fff" for ch in c["text"]) for c in cases)
    # the naive recipe many evaluators use: the first capital A-D in the reply
    import re
    naive = sum((m.group(0) if (m := re.search(r"[A-D]", c["text"])) else None) == c["expected"] for c in cases)
    return {"styles": len(cases), "chinese": zh, "english": len(cases) - zh, "right": len(cases) - len(wrong),
            "wrong": [c["text"] for c in wrong], "naive_first_capital_right": naive}


def bench_cmmlu(args) -> dict:
    from evalkit.cmmlu import run_cmmlu
    data_dir = SHARED / "data" / "cmmlu"
    out = {}
    for mode in args.modes.split(","):
        res = run_cmmlu({"data_dir": data_dir, "subjects": args.subjects.split(","), "model": "smollm2", "adapter": None,
                         "mode": mode, "shots": args.shots, "limit": args.limit, "max_new_tokens": 16,
                         "out": OUT / f"evalkit_cmmlu_{mode}", "threads": args.threads, "bootstrap": 1000, "seed": 0,
                         "progress": True})
        out[mode] = {"seconds": round(res["seconds"], 1), "accuracy": res["summary"]["choice_acc"],
                     "unparsed": res["summary"]["choice_unparsed"]["score"], "check": res["check"]["all"],
                     "per_subject": {s: {k: c[k] for k in ("n", "accuracy", "chance_accuracy_given_letters",
                                                           "predicted_letters", "gold_letters")}
                                     for s, c in res["check"]["subjects"].items()},
                     "prefix_cache": res["manifest"]["prefix_cache"]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=["text", "choice", "cmmlu"])
    p.add_argument("--pairs", type=int, default=10000)
    p.add_argument("--anchor", type=int, default=1000, help="pairs the stock recipe is timed on (then extrapolated)")
    p.add_argument("--anchor-all", action="store_true", help="also compare ROUGE with rouge-score on every pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subjects", default="clinical_knowledge,college_medicine,professional_medicine,traditional_chinese_medicine")
    p.add_argument("--modes", default="loglik,generate")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--limit", type=int, default=None, help="first N test questions per subject")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    info = {"workload": args.workload, "machine": machine(), "args": vars(args)}
    t = time.perf_counter()
    info["result"] = {"text": bench_text, "choice": bench_choice, "cmmlu": bench_cmmlu}[args.workload](args)
    info["wall_seconds"] = round(time.perf_counter() - t, 1)
    info["machine"]["load_average_at_end"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"evalkit_auto_{args.workload}.json").write_text(json.dumps(info, ensure_ascii=False, indent=1, default=str))
    print(json.dumps(info, ensure_ascii=False, indent=1, default=str))


if __name__ == "__main__":
    main()
