"""A small evalkit run folder for the review tests: real Chinese medical questions with answers of
varying quality, CMMLU-style choice questions and two English items, scored the way `evalkit auto`
documents (items.jsonl: id, task, prompt, prediction, reference, bleu, chrf, rouge1, rouge2,
rougeL, em, extracted, correct; summary.json).  The scores are computed here with sacrebleu and
rouge-score (CJK characters as tokens), not typed in."""
from __future__ import annotations

import json
import re
from pathlib import Path

import sacrebleu
from rouge_score import rouge_scorer

MEDICAL = [
    ("med-001", "我最近总是头痛，尤其是下午，还伴有眼睛胀，需要做什么检查？",
     "下午头痛伴眼胀，常见原因有用眼过度、血压升高和青光眼。建议先测量血压，并到眼科查眼压；如果头痛突然加重或伴呕吐、视力下降，请立即就医。",
     "头痛伴眼胀要警惕青光眼和高血压，建议测血压、查眼压和眼底，必要时做头颅CT。平时注意休息，避免长时间看屏幕。"),
    ("med-002", "孩子发烧38.5度，可以吃布洛芬吗？孩子三岁。",
     "三岁儿童体温38.5℃可以按体重服用布洛芬混悬液，每次5-10mg/kg，两次间隔至少6小时，24小时内不超过4次。多喝水，如果持续高热超过三天或精神差，应及时就医。",
     "可以。布洛芬适用于6个月以上儿童，按体重每次5~10mg/kg，间隔6~8小时。注意补充水分，高热不退、抽搐或精神萎靡需就医。"),
    ("med-003", "乙肝小三阳需要吃药吗？肝功能正常。",
     "小三阳就是乙肝好了，不需要任何检查，也不用再管它。",
     "乙肝小三阳、肝功能正常时，需要查HBV-DNA定量和肝脏B超。如果病毒复制水平低、无肝硬化，一般暂不需抗病毒治疗，但要每3~6个月复查肝功能和病毒量。"),
    ("med-004", "空腹血糖6.5是糖尿病吗？",
     "空腹血糖6.5mmol/L高于正常值（<6.1），但诊断糖尿病需要空腹血糖≥7.0或糖耐量试验2小时血糖≥11.1。建议复查空腹血糖并做糖耐量试验和糖化血红蛋白。",
     "空腹血糖6.1~7.0属于空腹血糖受损，还不能诊断糖尿病。建议做口服葡萄糖耐量试验和糖化血红蛋白检查，同时控制饮食、增加运动。"),
    ("med-005", "胃痛吃完饭就加重，还反酸，怎么办？",
     "可能是胃炎或胃溃疡。可以吃点奥美拉唑，少吃辛辣。",
     "饭后胃痛加重伴反酸，考虑胃溃疡或胃炎可能，建议做胃镜和幽门螺杆菌检测。可在医生指导下服用质子泵抑制剂，规律饮食，戒烟酒。"),
    ("med-006", "高血压吃了降压药，血压还是150/95，要加药吗？",
     "血压高就多吃一片药，吃到正常为止。",
     "规律服药后血压仍在150/95mmHg，说明控制不达标，应复诊由医生调整方案，如增加剂量或联合用药，不要自行加量。同时低盐饮食、控制体重并记录家庭血压。"),
    ("med-007", "咳嗽两周了，有黄痰，要不要拍胸片？",
     "咳嗽两周伴黄痰，可能有细菌感染，如支气管炎或肺炎。建议到呼吸科就诊，查血常规并拍胸片，医生会根据结果决定是否用抗生素。",
     "咳嗽超过两周、咳黄痰，建议查血常规和胸片，排除肺炎。若有发热、胸痛或气促应尽快就诊，是否使用抗生素由医生决定。"),
    ("med-008", "体检发现甲状腺结节3毫米，要紧吗？",
     "甲状腺结节很常见，3毫米的结节大多是良性的。要看B超的TI-RADS分级，如果是3类及以下，一般每6到12个月复查B超即可，不需要手术。",
     "3mm甲状腺结节多为良性，关键看超声特征（TI-RADS分级）。低危结节定期复查超声即可；如有微钙化、边界不清等可疑表现，需进一步评估。"),
]

CHOICE = [
    ("cmmlu-001", "下列哪种维生素缺乏会导致夜盲症？\nA. 维生素A\nB. 维生素B1\nC. 维生素C\nD. 维生素D",
     "夜盲症与视紫红质合成不足有关，答案是A。", "A"),
    ("cmmlu-002", "阿司匹林最常见的不良反应是？\nA. 肝损伤\nB. 胃肠道反应\nC. 低血糖\nD. 皮疹",
     "根据题意，A项错误，B项正确。答案：B", "B"),
    ("cmmlu-003", "正常成人安静时的心率范围是？\nA. 40-60次/分\nB. 60-100次/分\nC. 100-120次/分\nD. 120-140次/分",
     "正常心率在40到60之间，所以选A。", "B"),
    ("cmmlu-004", "胰岛素由哪种细胞分泌？\nA. 胰岛α细胞\nB. 胰岛β细胞\nC. 胰岛δ细胞\nD. 腺泡细胞",
     "胰岛素由胰岛β细胞分泌，正确答案是 **B**。", "B"),
]

ENGLISH = [
    ("en-001", "What should I do if I sprain my ankle?",
     "Rest the ankle, apply ice for 15-20 minutes every few hours, use a compression bandage and keep it raised. "
     "See a doctor if you cannot bear weight or the pain is severe.",
     "Follow RICE: rest, ice, compression and elevation. Seek medical care if you cannot walk on it or swelling is severe."),
    ("en-002", "Is it safe to take paracetamol with ibuprofen?",
     "No, never take them together.",
     "Yes, for most adults paracetamol and ibuprofen can be taken together or alternated at normal doses; "
     "check with a pharmacist if you have kidney, liver or stomach problems."),
]

_TOKEN = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9]+|[^\sA-Za-z0-9\u3400-\u9fff]")


class _CjkTokenizer:
    """Each CJK character a token, each ASCII word/number one lower-cased token (issue 6's default)."""

    def tokenize(self, text):
        return [t.lower() for t in _TOKEN.findall(text)]


def _scores(prediction: str, reference: str, zh: bool) -> dict:
    tok = "zh" if zh else "13a"
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_CjkTokenizer())
    r = scorer.score(reference, prediction)
    return {"bleu": round(sacrebleu.sentence_bleu(prediction, [reference], tokenize=tok).score, 4),
            "chrf": round(sacrebleu.sentence_chrf(prediction, [reference]).score, 4),
            "rouge1": round(r["rouge1"].fmeasure, 6), "rouge2": round(r["rouge2"].fmeasure, 6),
            "rougeL": round(r["rougeL"].fmeasure, 6), "em": float(prediction.strip() == reference.strip())}


def _extract(text: str):
    found = re.findall(r"(?:答案是|答案：|正确答案是|选)\s*\**\s*([A-D])", text)
    return found[-1] if found else None


def run_items() -> list[dict]:
    items = []
    for id_, prompt, pred, ref in MEDICAL:
        items.append({"id": id_, "task": "medical_qa", "prompt": prompt, "prediction": pred, "reference": ref,
                      **_scores(pred, ref, zh=True)})
    for id_, prompt, pred, gold in CHOICE:
        got = _extract(pred)
        items.append({"id": id_, "task": "cmmlu_medicine", "prompt": prompt, "prediction": pred, "reference": gold,
                      "answer": gold, "extracted": got, "correct": got == gold, "em": float(got == gold)})
    for id_, prompt, pred, ref in ENGLISH:
        items.append({"id": id_, "task": "general_en", "prompt": prompt, "prediction": pred, "reference": ref,
                      **_scores(pred, ref, zh=False)})
    return items


def write_run(run: Path, items: list[dict] | None = None) -> Path:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    items = items if items is not None else run_items()
    with open(run / "items.jsonl", "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    metrics = ["bleu", "chrf", "rouge1", "rouge2", "rougeL", "em"]
    summary = {m: {"score": sum(i[m] for i in items if m in i) / sum(1 for i in items if m in i)} for m in metrics}
    (run / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return run
