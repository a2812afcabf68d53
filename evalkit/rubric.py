"""Review rubrics: a YAML file of dimensions an expert scores, and the Label Studio interface built
from it.  One rubric drives the labeling page, the parsing of annotations and the statistics.

    >>> from evalkit.rubric import load_rubric, label_config
    >>> rubric = load_rubric("rubrics/medical.yaml")       # raises RubricError listing every problem
    >>> [d["name"] for d in rubric["dimensions"]][:2]
    ['accuracy', 'safety']
    >>> xml = label_config(rubric)                           # <View>...<Rating name="accuracy" .../>

A dimension has a ``type``:

- ``rating``: 1..``scale`` stars, every level described (``levels``); ordinal.
- ``choice``: one of ``options`` (radio buttons); ordinal when every option has a ``score``,
  nominal otherwise.
- ``number``: a number in [``min``, ``max``]; interval.
- ``text``: a free comment; shown in the report, never averaged.

Every human-facing string is a ``{zh: ..., en: ...}`` pair; the page shows both.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import yaml

TYPES = ("rating", "choice", "number", "text")
LEVEL_OF_MEASUREMENT = {"rating": "ordinal", "number": "interval"}
TOP_KEYS = {"name", "version", "title", "instructions", "dimensions"}
DIM_KEYS = {"name", "type", "label", "guidance", "required", "scale", "levels", "options", "min", "max", "step"}
OPTION_KEYS = {"value", "label", "score"}
# Names the interface and the task data use (Label Studio's JSON_MIN export puts data fields and
# dimensions side by side in one row); a dimension may not take them, nor start with auto_.
RESERVED = {"prompt", "answer", "reference", "auto", "auto_scores", "item", "task", "key", "item_id", "prediction",
            "sample_weight", "id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time"}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
LANGS = ("zh", "en")


class RubricError(ValueError):
    """A rubric with problems; ``problems`` lists every one, so a user fixes them in one pass."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem{'s' * (len(problems) != 1)}:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def _check_text(value, where: str, problems: list[str], required: bool = True) -> None:
    if value is None:
        if required:
            problems.append(f"{where}: missing (a mapping with zh and en)")
        return
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping with zh and en, got {value!r}")
        return
    for lang in LANGS:
        if not isinstance(value.get(lang), str) or not value.get(lang).strip():
            problems.append(f"{where}.{lang}: missing or empty")
    for extra in sorted(set(value) - set(LANGS)):
        problems.append(f"{where}.{extra}: unknown language (known: zh, en)")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_dimension(dim, i: int, problems: list[str], seen: set) -> None:
    where = f"dimensions[{i}]"
    if not isinstance(dim, dict):
        problems.append(f"{where}: expected a mapping, got {dim!r}")
        return
    name = dim.get("name")
    if isinstance(name, str):
        where = f"dimensions[{i}] ({name})"
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(f"{where}.name: must match [a-z][a-z0-9_]* (at most 40 characters), got {name!r}")
    elif name in RESERVED or name.startswith("auto_"):
        problems.append(f"{where}.name: {name!r} is reserved for the item's own fields "
                        f"({', '.join(sorted(RESERVED))}, auto_*)")
    elif name in seen:
        problems.append(f"{where}.name: duplicate dimension name {name!r}")
    else:
        seen.add(name)
    for key in sorted(set(dim) - DIM_KEYS):
        problems.append(f"{where}.{key}: unknown key (known: {', '.join(sorted(DIM_KEYS))})")
    kind = dim.get("type")
    if kind not in TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(TYPES)}, got {kind!r}")
    _check_text(dim.get("label"), f"{where}.label", problems)
    _check_text(dim.get("guidance"), f"{where}.guidance", problems, required=False)
    if "required" in dim and not isinstance(dim["required"], bool):
        problems.append(f"{where}.required: expected true/false, got {dim['required']!r}")
    if kind == "rating":
        scale = dim.get("scale")
        if not isinstance(scale, int) or isinstance(scale, bool) or not 2 <= scale <= 10:
            problems.append(f"{where}.scale: expected an integer from 2 to 10, got {scale!r}")
            scale = None
        levels = dim.get("levels")
        if not isinstance(levels, dict):
            problems.append(f"{where}.levels: expected a mapping from each level (1..scale) to its meaning")
        elif scale:
            keys = {k for k in levels if isinstance(k, int) and not isinstance(k, bool)}
            for bad in sorted((str(k) for k in set(levels) - keys)):
                problems.append(f"{where}.levels.{bad}: level keys must be integers 1..{scale}")
            for missing in sorted(set(range(1, scale + 1)) - keys):
                problems.append(f"{where}.levels: level {missing} is not described")
            for extra in sorted(k for k in keys if not 1 <= k <= scale):
                problems.append(f"{where}.levels.{extra}: outside the scale 1..{scale}")
            for k in sorted(keys):
                _check_text(levels[k], f"{where}.levels.{k}", problems)
    elif kind == "choice":
        options = dim.get("options")
        if not isinstance(options, list) or len(options) < 2:
            problems.append(f"{where}.options: expected a list of at least 2 options")
            options = options if isinstance(options, list) else []
        values, scored = set(), 0
        for j, opt in enumerate(options):
            ow = f"{where}.options[{j}]"
            if not isinstance(opt, dict):
                problems.append(f"{ow}: expected a mapping with value, label and optional score")
                continue
            for key in sorted(set(opt) - OPTION_KEYS):
                problems.append(f"{ow}.{key}: unknown key (known: label, score, value)")
            value = opt.get("value")
            if not isinstance(value, str) or not value.strip() or "," in value:
                problems.append(f"{ow}.value: expected a non-empty string without commas, got {value!r}")
            elif value in values:
                problems.append(f"{ow}.value: duplicate option {value!r}")
            else:
                values.add(value)
            _check_text(opt.get("label"), f"{ow}.label", problems)
            if "score" in opt:
                if _is_number(opt["score"]):
                    scored += 1
                else:
                    problems.append(f"{ow}.score: expected a number, got {opt['score']!r}")
        if 0 < scored < len(options):
            problems.append(f"{where}.options: give every option a score (ordinal) or none (nominal)")
    elif kind == "number":
        lo, hi = dim.get("min"), dim.get("max")
        for key, v in (("min", lo), ("max", hi)):
            if not _is_number(v):
                problems.append(f"{where}.{key}: expected a number, got {v!r}")
        if _is_number(lo) and _is_number(hi) and lo >= hi:
            problems.append(f"{where}: min ({lo}) must be below max ({hi})")
        if "step" in dim and (not _is_number(dim["step"]) or dim["step"] <= 0):
            problems.append(f"{where}.step: expected a positive number, got {dim['step']!r}")
    if kind in ("rating", "choice", "number", "text"):
        allowed = {"rating": {"scale", "levels"}, "choice": {"options"}, "number": {"min", "max", "step"},
                   "text": set()}[kind]
        for key in sorted({"scale", "levels", "options", "min", "max", "step"} & set(dim) - allowed):
            problems.append(f"{where}.{key}: not used by a {kind} dimension")


def rubric_problems(raw) -> list[str]:
    """Every problem of a parsed rubric (an empty list when it is valid)."""
    if not isinstance(raw, dict):
        return [f"the top level must be a mapping, got {type(raw).__name__}"]
    problems: list[str] = []
    for key in sorted(set(raw) - TOP_KEYS):
        problems.append(f"{key}: unknown key (known: {', '.join(sorted(TOP_KEYS))})")
    if not isinstance(raw.get("name"), str) or not NAME_RE.match(raw.get("name") or ""):
        problems.append(f"name: must match [a-z][a-z0-9_]*, got {raw.get('name')!r}")
    if "version" in raw and not isinstance(raw["version"], (int, str)):
        problems.append(f"version: expected an integer or string, got {raw['version']!r}")
    _check_text(raw.get("title"), "title", problems)
    _check_text(raw.get("instructions"), "instructions", problems, required=False)
    dims = raw.get("dimensions")
    if not isinstance(dims, list) or not dims:
        problems.append("dimensions: expected a non-empty list")
        dims = []
    seen: set = set()
    for i, dim in enumerate(dims):
        _check_dimension(dim, i, problems, seen)
    if dims and not any(isinstance(d, dict) and d.get("type") in ("rating", "choice", "number") for d in dims):
        problems.append("dimensions: at least one must be scored (rating, choice or number)")
    return problems


def load_rubric(path) -> dict:
    """Read and validate a rubric YAML file; return it normalized (levels keyed 1..scale, defaults set)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RubricError(str(path), ["the file does not exist"])
    except yaml.YAMLError as e:
        raise RubricError(str(path), [f"not valid YAML: {e}"])
    return parse_rubric(raw, source=str(path))


def parse_rubric(raw, source: str = "rubric") -> dict:
    problems = rubric_problems(raw)
    if problems:
        raise RubricError(source, problems)
    rubric = {"name": raw["name"], "version": raw.get("version", 1), "title": raw["title"],
              "instructions": raw.get("instructions"), "dimensions": []}
    for dim in raw["dimensions"]:
        d = {"name": dim["name"], "type": dim["type"], "label": dim["label"],
             "guidance": dim.get("guidance"), "required": dim.get("required", dim["type"] != "text")}
        if d["type"] == "rating":
            d["scale"] = dim["scale"]
            d["levels"] = {int(k): v for k, v in sorted(dim["levels"].items())}
        elif d["type"] == "choice":
            d["options"] = [dict(o) for o in dim["options"]]
        elif d["type"] == "number":
            d.update(min=dim["min"], max=dim["max"], step=dim.get("step", 1))
        rubric["dimensions"].append(d)
    rubric["fingerprint"] = hashlib.sha256(json.dumps(rubric, sort_keys=True, ensure_ascii=False)
                                           .encode()).hexdigest()[:12]
    return rubric


# ---- what a dimension means for statistics -------------------------------------------------------

def level_of_measurement(dim: dict) -> str | None:
    """'ordinal', 'interval' or 'nominal' for scored dimensions; None for free text."""
    if dim["type"] == "choice":
        return "ordinal" if all("score" in o for o in dim["options"]) else "nominal"
    return LEVEL_OF_MEASUREMENT.get(dim["type"])


def value_range(dim: dict) -> tuple[float, float] | None:
    """The lowest and highest numeric value a dimension can take (None when it has no numbers)."""
    if dim["type"] == "rating":
        return 1.0, float(dim["scale"])
    if dim["type"] == "number":
        return float(dim["min"]), float(dim["max"])
    if dim["type"] == "choice" and level_of_measurement(dim) == "ordinal":
        scores = [float(o["score"]) for o in dim["options"]]
        return min(scores), max(scores)
    return None


def numeric_value(dim: dict, value):
    """The number statistics use for a stored answer: rating/number as is, a scored choice's score.
    A nominal choice stays its option value; text gives None."""
    if value is None:
        return None
    if dim["type"] in ("rating", "number"):
        return float(value)
    if dim["type"] == "choice":
        if level_of_measurement(dim) == "ordinal":
            return next((float(o["score"]) for o in dim["options"] if o["value"] == value), None)
        return value
    return None


def both(text: dict) -> str:
    """'中文 · English' for a zh/en pair (the page shows both languages)."""
    return f"{text['zh']} · {text['en']}"


# ---- the Label Studio interface -----------------------------------------------------------------

STYLE = """
.evalkit-item { background: #f7f7f9; padding: 8px 12px; border-radius: 6px; margin-bottom: 8px; }
.evalkit-dim { border-top: 1px solid #ddd; padding-top: 6px; margin-top: 6px; }
.evalkit-levels { color: #555; }
"""


def label_config(rubric: dict) -> str:
    """The Label Studio labeling config (XML) for a rubric: the item (prompt, model answer,
    reference, automatic scores) then one control per dimension, labels in Chinese and English."""
    view = ET.Element("View")
    ET.SubElement(view, "Style").text = STYLE
    ET.SubElement(view, "Header", value=both(rubric["title"]))
    if rubric.get("instructions"):
        ET.SubElement(view, "Header", value=both(rubric["instructions"]), size="6")
    item = ET.SubElement(view, "View", className="evalkit-item")
    ET.SubElement(item, "Header", value="任务 Task: $task · 条目 Item: $item_id", size="6")
    for name, field, title in (("prompt", "$prompt", "问题 · Prompt"),
                               ("answer", "$prediction", "模型回答 · Model answer"),
                               ("reference", "$reference", "参考答案 · Reference")):
        ET.SubElement(item, "Header", value=title, size="5")
        ET.SubElement(item, "Text", name=name, value=field)
    ET.SubElement(item, "Header", value="自动评分（仅供筛查）· Automatic scores (screening only)", size="5")
    ET.SubElement(item, "Text", name="auto", value="$auto_scores")
    # The task's prediction (model_version evalkit-auto) carries the screening verdict; its score
    # sorts the data manager, so reviewers can start from the items screening trusts least.
    ET.SubElement(item, "TextArea", name="auto_scores", toName="answer", editable="false",
                  maxSubmissions="1", rows="1")
    for dim in rubric["dimensions"]:
        box = ET.SubElement(view, "View", className="evalkit-dim")
        ET.SubElement(box, "Header", value=both(dim["label"]), size="4")
        if dim.get("guidance"):
            ET.SubElement(box, "Header", value=both(dim["guidance"]), size="6")
        required = "true" if dim.get("required") else "false"
        if dim["type"] == "rating":
            levels = ET.SubElement(box, "View", className="evalkit-levels")
            for k, text in dim["levels"].items():
                ET.SubElement(levels, "Header", value=f"{k} = {both(text)}", size="6")
            ET.SubElement(box, "Rating", name=dim["name"], toName="answer", maxRating=str(dim["scale"]),
                          icon="star", size="medium", required=required)
        elif dim["type"] == "choice":
            choices = ET.SubElement(box, "Choices", name=dim["name"], toName="answer", choice="single-radio",
                                    showInline="true", required=required)
            for opt in dim["options"]:
                # The page shows both labels; the result stores the alias (the option's value).
                ET.SubElement(choices, "Choice", value=both(opt["label"]), alias=opt["value"])
        elif dim["type"] == "number":
            ET.SubElement(box, "Number", name=dim["name"], toName="answer", min=str(dim["min"]),
                          max=str(dim["max"]), step=str(dim.get("step", 1)), required=required)
        else:
            ET.SubElement(box, "TextArea", name=dim["name"], toName="answer", rows="3", maxSubmissions="1",
                          editable="true", required=required,
                          placeholder=both(dim["guidance"]) if dim.get("guidance") else "")
    ET.indent(view, space="  ")
    return ET.tostring(view, encoding="unicode")


def parse_result(rubric: dict, result: list[dict]) -> dict:
    """The values one Label Studio annotation gives each dimension: {name: value}.  A dimension the
    annotator left empty is absent (partial annotations are allowed).  Choices come back as the
    option ``value`` (the alias), whatever label the page showed."""
    by_name = {d["name"]: d for d in rubric["dimensions"]}
    labels = {d["name"]: {both(o["label"]): o["value"] for o in d["options"]}
              for d in rubric["dimensions"] if d["type"] == "choice"}
    out = {}
    for region in result or []:
        dim = by_name.get(region.get("from_name"))
        value = region.get("value") or {}
        if dim is None:
            continue
        if dim["type"] == "rating" and value.get("rating") is not None:
            out[dim["name"]] = int(value["rating"])
        elif dim["type"] == "number" and value.get("number") is not None:
            out[dim["name"]] = value["number"]
        elif dim["type"] == "choice" and value.get("choices"):
            picked = value["choices"][0]
            out[dim["name"]] = labels[dim["name"]].get(picked, picked)
        elif dim["type"] == "text" and value.get("text"):
            text = "\n".join(t for t in value["text"] if t)
            if text.strip():
                out[dim["name"]] = text
    return out
