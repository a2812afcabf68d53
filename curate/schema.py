"""The one record schema every part of the toolkit reads and writes.

A record is a plain dict:

    id        str   unique within a run; an input's own id is kept
    source    str   the input file it came from
    task      str   task / domain label ("" when unknown)
    lang      str   ISO 639-1 code set by the language step ("" before it)
    messages  list  [{"role": "system"|"user"|"assistant", "content": str}, ...]
    text      str|None  a plain document (continued pre-training); then messages is []
    meta      dict  free JSON; steps record what they changed here

Records are stored with polars as Parquet (``meta`` as a JSON string, because
its keys differ between records) and as JSONL on request.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import polars as pl

ROLES = ("system", "user", "assistant")
FIELDS = ("id", "source", "task", "lang", "messages", "text", "meta")

MESSAGE_DTYPE = pl.List(pl.Struct({"role": pl.Utf8, "content": pl.Utf8}))
POLARS_SCHEMA = {
    "id": pl.Utf8,
    "source": pl.Utf8,
    "task": pl.Utf8,
    "lang": pl.Utf8,
    "messages": MESSAGE_DTYPE,
    "text": pl.Utf8,
    "meta": pl.Utf8,
}
# A rejected record is the record plus why it was dropped.
REJECT_EXTRA = {
    "stage": pl.Utf8,          # the step (or "read") that dropped it
    "reason": pl.Utf8,         # machine-readable, e.g. "unsafe:violence", "quality:too_short"
    "detail": pl.Utf8,         # human-readable context (file:line for read errors)
    "duplicate_of": pl.Utf8,   # the kept record's id, for duplicates
    "similarity": pl.Float64,  # estimated/verified similarity, for near-duplicates
}
REJECT_SCHEMA = {**POLARS_SCHEMA, **REJECT_EXTRA}


class SchemaError(ValueError):
    """A record that does not fit the schema; the message says which field and why."""


def make_record(id: str, source: str, *, messages: list[dict] | None = None, text: str | None = None,
                task: str = "", lang: str = "", meta: dict | None = None) -> dict:
    rec = {"id": str(id), "source": source, "task": task or "", "lang": lang or "",
           "messages": messages or [], "text": text, "meta": meta or {}}
    validate(rec)
    return rec


def validate(rec: dict) -> None:
    """Raise SchemaError naming the first problem with ``rec``."""
    if not rec.get("id"):
        raise SchemaError("record has no id")
    msgs, text = rec.get("messages") or [], rec.get("text")
    if not msgs and not (isinstance(text, str) and text.strip()):
        raise SchemaError("record has neither messages nor text")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise SchemaError(f"message {i} has role {m.get('role') if isinstance(m, dict) else m!r}; "
                              f"expected one of {ROLES}")
        if not isinstance(m.get("content"), str):
            raise SchemaError(f"message {i} ({m['role']}) has no text content")
    if msgs and not any(m["role"] == "assistant" for m in msgs):
        raise SchemaError("dialogue has no assistant turn")
    if not isinstance(rec.get("meta", {}), dict):
        raise SchemaError("meta must be a JSON object")


# -- convenient views used by many steps ------------------------------------------------------

def prompt_text(rec: dict) -> str:
    """Everything the model is given: system and user turns (and earlier assistant turns)."""
    msgs = rec["messages"]
    last_assistant = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
    return "\n".join(m["content"] for m in msgs[:last_assistant] if m["content"])


def answer_text(rec: dict) -> str:
    """The final assistant turn (what SFT mainly learns), or the whole text of a document."""
    if rec.get("text") and not rec["messages"]:
        return rec["text"]
    for m in reversed(rec["messages"]):
        if m["role"] == "assistant":
            return m["content"]
    return ""


def all_text(rec: dict) -> str:
    if rec.get("text") and not rec["messages"]:
        return rec["text"]
    return "\n".join(m["content"] for m in rec["messages"])


# -- polars conversion ------------------------------------------------------------------------

def _row(rec: dict, extra: Iterable[str] = ()) -> dict:
    row = {k: rec.get(k) for k in FIELDS}
    row["meta"] = json.dumps(rec.get("meta") or {}, ensure_ascii=False, sort_keys=True)
    row["messages"] = [{"role": m["role"], "content": m["content"]} for m in rec.get("messages") or []]
    for k in extra:
        row[k] = rec.get(k)
    return row


def to_frame(records: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([_row(r) for r in records], schema=POLARS_SCHEMA)


def rejects_frame(rejects: list[dict]) -> pl.DataFrame:
    """``rejects`` are records with stage/reason/detail/duplicate_of/similarity keys added."""
    return pl.DataFrame([_row(r, REJECT_EXTRA) for r in rejects], schema=REJECT_SCHEMA)


def from_frame(df: pl.DataFrame) -> Iterable[dict]:
    for row in df.iter_rows(named=True):
        row["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
        row["messages"] = row.get("messages") or []
        yield row
