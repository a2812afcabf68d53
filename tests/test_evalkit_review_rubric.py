"""Rubrics: the shipped ones validate, a broken one reports every problem at once, the Label Studio
interface has the right controls with Chinese and English labels, and annotation results parse."""
from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner

from evalkit.cli import main
from evalkit.rubric import RubricError, label_config, level_of_measurement, load_rubric, parse_result, parse_rubric

ROOT = Path(__file__).resolve().parent.parent
RUBRICS = sorted((ROOT / "rubrics").glob("*.yaml"))
CJK = lambda s: any("\u4e00" <= ch <= "\u9fff" for ch in s)  # noqa: E731


def test_shipped_rubrics_are_valid_and_bilingual():
    assert {p.stem for p in RUBRICS} >= {"general", "medical", "legal"}
    for path in RUBRICS:
        rubric = load_rubric(path)
        res = CliRunner().invoke(main, ["rubric", "validate", str(path)])
        assert res.exit_code == 0 and "ok" in res.output, res.output
        for dim in rubric["dimensions"]:
            assert CJK(dim["label"]["zh"]) and not CJK(dim["label"]["en"]), dim["name"]
            if dim["type"] == "rating":
                assert sorted(dim["levels"]) == list(range(1, dim["scale"] + 1))
                assert all(CJK(t["zh"]) and t["en"] for t in dim["levels"].values())
        assert any(level_of_measurement(d) == "ordinal" for d in rubric["dimensions"])


BROKEN = """
name: Medical Review
title: {zh: 评审}
dimensions:
  - name: accuracy
    type: rating
    scale: 5
    label: {zh: 准确性, en: Accuracy}
    levels:
      1: {zh: 错, en: Wrong}
      2: {zh: 差, en: Poor}
      6: {zh: 超, en: Beyond}
  - name: accuracy
    type: stars
    label: {zh: 重复, en: Duplicate}
  - name: prompt
    type: choice
    label: {zh: 安全, en: Safe, fr: Sûr}
    options:
      - {value: safe, score: 1, label: {zh: 安全, en: Safe}}
      - {value: safe, label: {zh: 不安全, en: Unsafe}}
  - name: minutes
    type: number
    min: 10
    max: 5
    colour: red
    label: {zh: 用时, en: "Minutes, rough"}
"""


def test_broken_rubric_lists_every_problem_at_once(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    with pytest.raises(RubricError) as err:
        load_rubric(path)
    problems = err.value.problems
    expected = ["name: must match", "title.en: missing", "level 3 is not described", "level 4 is not described",
                "level 5 is not described", "levels.6: outside the scale", "duplicate dimension name 'accuracy'",
                "type: must be one of", "'prompt' is reserved", "label.fr: unknown language",
                "duplicate option 'safe'", "every option a score", "min (10) must be below max (5)",
                "colour: unknown key"]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    res = CliRunner().invoke(main, ["rubric", "validate", str(path)])
    assert res.exit_code == 1
    assert f"{len(problems)} problems" in res.output
    assert all(p in res.output for p in problems)


def test_unquoted_comma_in_flow_yaml_is_caught():
    # YAML flow mappings split on commas: {zh: 正确, en: Right, minor flaws} gives a key "minor flaws".
    raw = yaml.safe_load("name: x\ntitle: {zh: 题, en: T}\ndimensions:\n  - name: a\n    type: rating\n    scale: 2\n"
                         "    label: {zh: 甲, en: A}\n    levels:\n      1: {zh: 差, en: Bad}\n"
                         "      2: {zh: 好, en: Right, minor flaws}\n")
    with pytest.raises(RubricError, match="levels.2.minor flaws: unknown language"):
        parse_rubric(raw)


def test_label_config_has_each_control_with_both_languages():
    rubric = load_rubric(ROOT / "rubrics" / "medical.yaml")
    xml = label_config(rubric)
    view = ET.fromstring(xml)
    controls = {el.get("name"): el for el in view.iter() if el.tag in ("Rating", "Choices", "TextArea", "Number")}
    assert controls["accuracy"].tag == "Rating" and controls["accuracy"].get("maxRating") == "5"
    assert controls["clarity"].get("maxRating") == "3"
    assert controls["safety"].tag == "Choices" and controls["safety"].get("choice") == "single-radio"
    assert [c.get("alias") for c in controls["safety"]] == ["harmful", "caution", "safe"]
    assert controls["overall"].tag == "Number" and (controls["overall"].get("min"), controls["overall"].get("max")) == ("0", "10")
    assert controls["comment"].tag == "TextArea"
    assert all(el.get("toName") == "answer" for el in controls.values())
    headers = [el.get("value") for el in view.iter("Header")]
    assert "医学准确性 · Medical accuracy" in headers and "安全性 · Safety" in headers
    assert any(h.startswith("1 = 有严重医学错误 · Contains a serious medical error") for h in headers)
    texts = {el.get("name"): el.get("value") for el in view.iter("Text")}
    assert texts == {"prompt": "$prompt", "answer": "$prediction", "reference": "$reference", "auto": "$auto_scores"}
    res = CliRunner().invoke(main, ["rubric", "xml", str(ROOT / "rubrics" / "medical.yaml")])
    assert res.exit_code == 0 and res.output.strip() == xml.strip()


def test_parse_result_reads_label_studio_shapes():
    rubric = load_rubric(ROOT / "rubrics" / "medical.yaml")
    result = [  # the shapes Label Studio stores (GUIDE section 1)
        {"from_name": "accuracy", "to_name": "answer", "type": "rating", "value": {"rating": 4}},
        {"from_name": "safety", "to_name": "answer", "type": "choices", "value": {"choices": ["caution"]}},
        {"from_name": "referral", "to_name": "answer", "type": "choices",
         "value": {"choices": ["应建议就医但没有 · Missing where needed"]}},    # the label, when no alias came back
        {"from_name": "overall", "to_name": "answer", "type": "number", "value": {"number": 6}},
        {"from_name": "comment", "to_name": "answer", "type": "textarea", "value": {"text": ["剂量写错了", "请核对"]}},
        {"from_name": "auto_scores", "to_name": "answer", "type": "textarea", "value": {"text": ["BLEU 3.1"]}},
    ]
    assert parse_result(rubric, result) == {"accuracy": 4, "safety": "caution", "referral": "missing",
                                            "overall": 6, "comment": "剂量写错了\n请核对"}
    assert parse_result(rubric, result[:1]) == {"accuracy": 4}          # partial: the rest is absent
    assert parse_result(rubric, []) == {}
