"""`evalkit cmmlu`: CMMLU-format multiple choice (folders dev/ and test/ of SUBJECT.csv with
columns ,Question,A,B,C,D,Answer) with k-shot prompts from dev, in two modes:

* ``loglik``: the option letter with the highest log-likelihood after "答案：" (lm-eval's way);
* ``generate``: greedy text after "答案：", then the letter extracted from it (evalkit.choice).

The few-shot block is shared by a subject's questions, so it runs through the model once and its
key/value cache is reused (PrefixScorer).  A pipeline check comes with the accuracy: the letter
distribution of gold answers and of predictions, and the accuracy expected if predictions were
independent of the gold letters (sum over letters of p_gold * p_pred), with an exact binomial
p-value of the observed accuracy against it.  A 135M model sits near that baseline; a broken
pipeline (misaligned answers, always "A") shows up there too.

    >>> from evalkit.cmmlu import build_prompt
    >>> q = {"question": "1+1=?", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "B"}
    >>> print(build_prompt("elementary_mathematics", [], q)[1])
    <BLANKLINE>
    <BLANKLINE>
    1+1=?
    A. 1
    B. 2
    C. 3
    D. 4
    答案：
"""
from __future__ import annotations

import csv
import math
import sys
import time
from collections import Counter
from pathlib import Path

from .choice import extract_choice

LETTERS = "ABCD"
MEDICAL = ("anatomy", "clinical_knowledge", "college_medicine", "professional_medicine", "traditional_chinese_medicine",
           "virology", "nutrition", "college_medical_statistics")
# Subject names as CMMLU's own categories table gives them (for the task description line).
NAME_ZH = {
    "agronomy": "农学", "anatomy": "解剖学", "ancient_chinese": "古汉语", "arts": "艺术学", "astronomy": "天文学",
    "business_ethics": "商业伦理", "chinese_civil_service_exam": "中国公务员考试", "chinese_driving_rule": "中国驾驶规则",
    "chinese_food_culture": "中国饮食文化", "chinese_foreign_policy": "中国外交政策", "chinese_history": "中国历史",
    "chinese_literature": "中国文学", "chinese_teacher_qualification": "中国教师资格", "clinical_knowledge": "临床知识",
    "college_actuarial_science": "大学精算学", "college_education": "大学教育学",
    "college_engineering_hydrology": "大学工程水文学", "college_law": "大学法律", "college_mathematics": "大学数学",
    "college_medical_statistics": "大学医学统计", "college_medicine": "大学医学", "computer_science": "计算机科学",
    "computer_security": "计算机安全", "conceptual_physics": "概念物理学", "construction_project_management": "建设工程管理",
    "economics": "经济学", "education": "教育学", "electrical_engineering": "电气工程", "elementary_chinese": "小学语文",
    "elementary_commonsense": "小学常识", "elementary_information_and_technology": "小学信息技术",
    "elementary_mathematics": "初等数学", "ethnology": "民族学", "food_science": "食品科学", "genetics": "遗传学",
    "global_facts": "全球事实", "high_school_biology": "高中生物", "high_school_chemistry": "高中化学",
    "high_school_geography": "高中地理", "high_school_mathematics": "高中数学", "high_school_physics": "高中物理学",
    "high_school_politics": "高中政治", "human_sexuality": "人类性行为", "international_law": "国际法学",
    "journalism": "新闻学", "jurisprudence": "法理学", "legal_and_moral_basis": "法律与道德基础", "logical": "逻辑学",
    "machine_learning": "机器学习", "management": "管理学", "marketing": "市场营销", "marxist_theory": "马克思主义理论",
    "modern_chinese": "现代汉语", "nutrition": "营养学", "philosophy": "哲学", "professional_accounting": "专业会计",
    "professional_law": "专业法学", "professional_medicine": "专业医学", "professional_psychology": "专业心理学",
    "public_relations": "公共关系", "security_study": "安全研究", "sociology": "社会学", "sports_science": "体育学",
    "traditional_chinese_medicine": "中医中药", "virology": "病毒学", "world_history": "世界历史", "world_religions": "世界宗教",
}


class CmmluError(ValueError):
    pass


def load_subject(data_dir: Path, subject: str, split: str) -> list[dict]:
    path = Path(data_dir) / split / f"{subject}.csv"
    if not path.is_file():
        raise CmmluError(f"{path}: no such file (subjects are the CSV names in {Path(data_dir) / split})")
    rows, problems = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"Question", "A", "B", "C", "D", "Answer"} - set(reader.fieldnames or [])
        if missing:
            raise CmmluError(f"{path}: missing columns {sorted(missing)} (expected ,Question,A,B,C,D,Answer)")
        for n, r in enumerate(reader, 2):
            ans = (r["Answer"] or "").strip().upper()
            if ans not in LETTERS or not (r["Question"] or "").strip():
                problems.append(f"{path.name}:{n}: answer {r['Answer']!r} is not one of A-D or the question is empty")
                continue
            rows.append({"idx": len(rows), "question": r["Question"].strip(), "A": r["A"], "B": r["B"], "C": r["C"],
                         "D": r["D"], "answer": ans})
    if problems:
        raise CmmluError("\n".join(problems))
    return rows


def list_subjects(data_dir: Path) -> list[str]:
    return sorted(p.stem for p in (Path(data_dir) / "test").glob("*.csv"))


def _question_block(q: dict) -> str:
    return f"{q['question']}\nA. {q['A']}\nB. {q['B']}\nC. {q['C']}\nD. {q['D']}\n答案："


def build_prompt(subject: str, shots: list[dict], q: dict) -> tuple[str, str]:
    """(prefix shared by the subject, the question's own part).  The separator "\\n\\n" opens the
    question's part so that the prefix ends on a letter and tokenizes the same alone as joined."""
    name = NAME_ZH.get(subject, subject.replace("_", " "))
    prefix = f"以下是关于{name}的单项选择题，请直接给出正确答案的选项。"
    for s in shots:
        prefix += "\n\n" + _question_block(s) + s["answer"]
    return prefix, "\n\n" + _question_block(q)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (log-space terms)."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
             for i in range(k, n + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * sum(math.exp(t - m) for t in terms))


def letter_check(gold: list[str], pred: list[str | None]) -> dict:
    """Letter distributions, the accuracy expected by chance given them, and the binomial p-value."""
    n = len(gold)
    g, p = Counter(gold), Counter(x or "none" for x in pred)
    expected = sum(g[L] / n * p[L] / n for L in LETTERS) if n else 0.0
    correct = sum(a == b for a, b in zip(gold, pred))
    return {"n": n, "accuracy": correct / n if n else None, "gold_letters": dict(sorted(g.items())),
            "predicted_letters": dict(sorted(p.items())), "chance_accuracy_given_letters": expected,
            "p_value_vs_chance": binomial_sf(correct, n, expected) if n else None}


def run_cmmlu(cfg: dict, log=print) -> dict:
    """cfg: data_dir, subjects, model, adapter, mode, shots, out, limit, max_new_tokens, threads, bootstrap, seed."""
    from tqdm import tqdm
    from .auto import score_items, summarize, versions, write_run_folder
    from .generate import PrefixScorer, load_model
    data_dir = Path(cfg["data_dir"])
    subjects = cfg.get("subjects") or list_subjects(data_dir)
    problems = [f"unknown subject {s!r}" for s in subjects if not (data_dir / "test" / f"{s}.csv").is_file()]
    if cfg["mode"] not in ("loglik", "generate"):
        problems.append(f"mode must be loglik or generate, got {cfg['mode']!r}")
    if problems:
        raise CmmluError("; ".join(problems) + f" (in {data_dir / 'test'})")
    lm = load_model(cfg.get("model"), cfg.get("adapter"), cfg.get("threads"))
    items, t0, cache_use = [], time.time(), Counter()
    for subject in subjects:
        shots = load_subject(data_dir, subject, "dev")[: cfg["shots"]] if cfg["shots"] else []
        questions = load_subject(data_dir, subject, "test")[: cfg.get("limit") or None]
        prefix = build_prompt(subject, shots, questions[0])[0]
        scorer = PrefixScorer(lm, prefix)
        for q in tqdm(questions, desc=subject, unit="q", disable=not cfg.get("progress", True)):
            _, ctx = build_prompt(subject, shots, q)
            item = {"id": f"{subject}-{q['idx']}", "task": subject, "prompt": prefix + ctx, "references": [],
                    "answer": q["answer"], "choices": [q[L] for L in LETTERS], "scores": {}, "stats": {}}
            if cfg["mode"] == "loglik":
                lps = scorer.logprobs(ctx, list(LETTERS))
                item["logprobs"] = dict(zip(LETTERS, lps))
                item["extracted"] = LETTERS[max(range(4), key=lambda i: lps[i])]
                item["prediction"] = item["extracted"]
            else:
                item["prediction"] = scorer.greedy(ctx, max_new_tokens=cfg.get("max_new_tokens", 16))
                item["extracted"] = extract_choice(item["prediction"], item["choices"], LETTERS)
            items.append(item)
        cache_use.update(hits=scorer.cache_hits, misses=scorer.cache_misses)
    seconds = time.time() - t0
    results = score_items(items, ["choice"], {"choice_mode": "generate" if cfg["mode"] == "generate" else "loglik"})
    summary = summarize(results, items, cfg.get("bootstrap", 1000), cfg.get("seed", 0))
    check = {"all": letter_check([i["answer"] for i in items], [i["extracted"] for i in items]),
             "subjects": {s: letter_check([i["answer"] for i in items if i["task"] == s],
                                          [i["extracted"] for i in items if i["task"] == s]) for s in subjects}}
    manifest = {"command": "evalkit cmmlu", "argv": sys.argv[1:], "config": {k: str(v) if isinstance(v, Path) else v
                                                                            for k, v in cfg.items()},
                "versions": versions(), "seed": cfg.get("seed", 0), "model": lm.fingerprint,
                "prefix_cache": dict(cache_use), "seconds": round(seconds, 2), "items": len(items),
                "prompt_format": "lm-eval cmmlu: description, k dev shots, question, 'A. ..' options, '答案：'"}
    out = Path(cfg["out"])
    write_run_folder(out, items, summary, manifest, f"evalkit cmmlu ({cfg['mode']}, {cfg['shots']}-shot)",
                     extra={"cmmlu.json": check})
    return {"summary": summary, "check": check, "out": out, "seconds": seconds, "manifest": manifest}
