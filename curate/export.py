"""`curate export`: a curated set in the formats that trainers load directly.

* ``alpaca``: one JSON array (LLaMA-Factory's alpaca format): ``instruction`` (the last user
  turn), ``input`` (""), ``output`` (the last reply), ``system`` and ``history`` (earlier turns as
  ``[user, assistant]`` pairs), plus ``id`` and ``task``.
* ``sharegpt``: JSONL, ``{"conversations": [{"from": "human"|"gpt", "value"}], "system", "id", "task"}``
  (LLaMA-Factory's sharegpt format).
* ``messages``: JSONL, ``{"messages": [{"role", "content"}], "id", "task"}``: OpenAI chat format,
  the conversational format TRL's SFTTrainer takes.

curate's own reader reads all three back to the same messages.  alpaca and sharegpt (as
LLaMA-Factory reads them) need user/assistant turns that alternate, starting with the user and
ending with the assistant, after an optional system prompt; a record that does not fit, or a
plain document (``text``), is not written and is listed in ``FILE.skipped.jsonl`` with the
reason, so the count of records in = written + skipped.

    curate export --input out/curated.parquet --format messages --out train.jsonl
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from .writing import atomic_path, read_records, write_jsonl

FORMATS = ("alpaca", "sharegpt", "messages")


class NotExportable(ValueError):
    pass


def _alternating(rec: dict) -> tuple[str | None, list[tuple[str, str]]]:
    """(system prompt, [(user, assistant), ...]) or NotExportable saying why not."""
    msgs = rec["messages"]
    if not msgs:
        raise NotExportable("a plain document (text), not a dialogue")
    system = None
    if msgs[0]["role"] == "system":
        system, msgs = msgs[0]["content"], msgs[1:]
    roles = [m["role"] for m in msgs]
    if len(msgs) % 2 or roles != ["user", "assistant"] * (len(msgs) // 2) or not msgs:
        raise NotExportable(f"turns are not user/assistant alternating after one system prompt: {roles}")
    return system, [(msgs[i]["content"], msgs[i + 1]["content"]) for i in range(0, len(msgs), 2)]


def _extra(rec: dict) -> dict:
    return {"id": rec["id"], **({"task": rec["task"]} if rec.get("task") else {})}


def to_alpaca(rec: dict) -> dict:
    system, pairs = _alternating(rec)
    row = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system is not None:
        row["system"] = system
    if len(pairs) > 1:
        row["history"] = [list(p) for p in pairs[:-1]]
    return {**row, **_extra(rec)}


def to_sharegpt(rec: dict) -> dict:
    system, pairs = _alternating(rec)
    conv = [{"from": who, "value": text} for q, a in pairs for who, text in (("human", q), ("gpt", a))]
    return {"conversations": conv, **({"system": system} if system is not None else {}), **_extra(rec)}


def to_messages(rec: dict) -> dict:
    if not rec["messages"]:
        raise NotExportable("a plain document (text), not a dialogue")
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]], **_extra(rec)}


CONVERTERS = {"alpaca": to_alpaca, "sharegpt": to_sharegpt, "messages": to_messages}


def export_records(input_path: str, fmt: str, out: str) -> int:
    """Write the records of ``input_path`` (curated parquet or jsonl) to ``out`` in ``fmt``;
    return how many were written.  Records that do not fit go to ``out.skipped.jsonl``."""
    if fmt not in CONVERTERS:
        raise click.ClickException(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    convert, skipped, n = CONVERTERS[fmt], [], 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        if fmt == "alpaca":
            f.write("[")
        for rec in read_records(input_path):
            try:
                row = convert(rec)
            except NotExportable as e:
                skipped.append({"id": rec["id"], "source": rec.get("source"), "reason": str(e)})
                continue
            line = json.dumps(row, ensure_ascii=False)
            f.write((",\n" if n else "\n") + line if fmt == "alpaca" else line + "\n")
            n += 1
        if fmt == "alpaca":
            f.write("\n]\n")
    side = Path(f"{out}.skipped.jsonl")
    if skipped:
        write_jsonl(side, skipped)
        click.echo(f"skipped {len(skipped):,} records that {fmt} cannot hold; ids and reasons in {side}", err=True)
    else:
        side.unlink(missing_ok=True)
    return n
