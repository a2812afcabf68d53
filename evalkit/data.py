"""Eval items: what `evalkit auto` reads.

An item is a dict:

    id          str   stable, unique in the set
    task        str   for per-task breakdowns ("default" when absent)
    prompt      str   what the model is asked (all turns before the answer, joined)
    messages    list  the same as chat turns, for the chat template
    references  list[str]   gold answers ([] for pure choice items)
    answer      str|None    the gold letter of a choice question
    choices     list[str]|None  option texts in letter order
    prediction  str|None    the model's output (given, or generated later)

Read from a predictions JSONL (id, task, prompt, prediction, reference (string or list),
answer, choices), an eval JSONL of the same shape without predictions, or a curated set
(curate's schema: the prompt is every turn before the last assistant turn, the reference is
the last assistant turn).  Every bad line is reported at once, with file and line.
"""
from __future__ import annotations

import json
from pathlib import Path

from .choice import LETTERS


class DataError(ValueError):
    def __init__(self, path, problems: list[str]):
        self.problems = problems
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        super().__init__(f"{path}: {len(problems)} problem{'s' * (len(problems) != 1)}:\n"
                         + "\n".join(f"  - {p}" for p in shown))


def _choices(raw, where: str, problems: list[str]):
    if raw is None:
        return None
    if isinstance(raw, dict):   # {"A": "...", "B": "..."}
        keys = sorted(raw)
        if keys != list(LETTERS[: len(keys)]):
            problems.append(f"{where}: choices keys must be A, B, C... in order, got {keys}")
            return None
        raw = [raw[k] for k in keys]
    if not isinstance(raw, list) or not 2 <= len(raw) <= len(LETTERS) or not all(isinstance(c, str) for c in raw):
        problems.append(f"{where}: choices must be a list of 2..{len(LETTERS)} strings or an A/B/C mapping")
        return None
    return raw


def _references(raw, where: str, problems: list[str]) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(r, str) for r in raw):
        return list(raw)
    problems.append(f"{where}: reference must be a string or a non-empty list of strings")
    return []


def item_from_record(rec: dict, where: str, problems: list[str], need_prediction: bool) -> dict | None:
    """One eval item from a JSON object (predictions/eval shape or curated messages shape)."""
    if not isinstance(rec, dict):
        problems.append(f"{where}: expected a JSON object")
        return None
    n_before = len(problems)
    if rec.get("id") in (None, ""):
        problems.append(f"{where}: no id")
    messages = rec.get("messages") or []
    reference = rec.get("reference", rec.get("references"))
    if messages and "prompt" not in rec:   # curated record: answer = the last assistant turn
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                      for m in messages):
            problems.append(f"{where}: messages must be a list of {{role, content}}")
            return None
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        if last is None:
            problems.append(f"{where}: messages have no assistant turn to use as the reference")
            return None
        if reference is None:
            reference = messages[last]["content"]
        messages = messages[:last]
        prompt = "\n".join(m["content"] for m in messages if m["content"])
    else:
        prompt = rec.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append(f"{where}: no prompt")
            prompt = ""
        messages = [{"role": "user", "content": prompt}]
    refs = _references(reference, where, problems)
    choices = _choices(rec.get("choices"), where, problems)
    answer = rec.get("answer")
    if answer is not None:
        answer = str(answer).strip().upper()
        allowed = LETTERS[: len(choices)] if choices else LETTERS
        if len(answer) != 1 or answer not in allowed:
            problems.append(f"{where}: answer must be one letter of {allowed}, got {rec.get('answer')!r}")
    if not refs and answer is None:
        problems.append(f"{where}: neither a reference nor a choice answer: nothing to score")
    prediction = rec.get("prediction")
    if need_prediction and not isinstance(prediction, str):
        problems.append(f"{where}: no prediction (a string)")
    if len(problems) > n_before:
        return None
    return {"id": str(rec["id"]), "task": str(rec.get("task") or "default"), "prompt": prompt,
            "messages": messages, "references": refs, "answer": answer, "choices": choices,
            "prediction": prediction if isinstance(prediction, str) else None}


def load_items(path, need_prediction: bool = False, limit: int | None = None) -> list[dict]:
    """Items from a JSONL file (predictions or eval shape), a JSON array, or a curated Parquet set."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, ["no such file"])
    problems: list[str] = []
    items: list[dict] = []
    if path.suffix == ".parquet":
        from curate.writing import read_records
        rows = ((f"{path}: record {i + 1}", rec) for i, rec in enumerate(read_records(path)))
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(path, [f"not valid JSON: {e}"]) from None
        if not isinstance(data, list):
            raise DataError(path, ["a .json eval set must be an array of objects (or use .jsonl)"])
        rows = ((f"{path}: item {i + 1}", rec) for i, rec in enumerate(data))
    else:
        rows = _jsonl_rows(path, problems)
    seen: dict[str, str] = {}
    for where, rec in rows:
        item = item_from_record(rec, where, problems, need_prediction)
        if item is None:
            continue
        if item["id"] in seen:
            problems.append(f"{where}: duplicate id {item['id']!r} (first at {seen[item['id']]})")
            continue
        seen[item["id"]] = where
        items.append(item)
        if limit and len(items) >= limit:
            break
    if problems:
        raise DataError(path, problems)
    if not items:
        raise DataError(path, ["no items"])
    return items


def _jsonl_rows(path: Path, problems: list[str]):
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path.name}:{n}", json.loads(line)
                except json.JSONDecodeError as e:
                    problems.append(f"{path.name}:{n}: malformed JSON ({e.msg} at column {e.colno})")
        except UnicodeDecodeError as e:
            problems.append(f"{path.name}: not UTF-8 ({e})")
