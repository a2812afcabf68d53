"""Reading raw corpora: files, globs and folders in JSONL, JSON, CSV/TSV or Parquet, in any
common encoding, in alpaca / ShareGPT / OpenAI-messages / plain-text / Q&A-column shapes.

``read_source`` yields ``(record, None)`` for every good record and ``(None, reject)`` for every
line or record it cannot use, with file, line and reason, so the caller can count both and the
run goes on.  Nothing here decides what is *good data*: that is the steps' job.
"""
from __future__ import annotations

import codecs
import csv
import glob
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .schema import ROLES, SchemaError, make_record

SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                  ".parquet": "parquet", ".txt": "txt"}
SHAPES = ("auto", "alpaca", "sharegpt", "messages", "text", "columns")
MAP_KEYS = ("id", "task", "system", "user", "assistant", "text")
# Column names that, without --map, are taken as question and answer.
QUESTION_COLUMNS = ("question", "prompt", "query", "ask", "q", "问题", "问")
ANSWER_COLUMNS = ("answer", "response", "completion", "reply", "a", "答案", "回答", "答")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bot": "assistant", "model": "assistant", "system": "system"}


class InputError(ValueError):
    """An input that cannot be read at all (missing file, unknown format)."""


@dataclass
class SourceSpec:
    """How to read one input path. ``mapping`` maps schema keys to columns (``user=title+ask``)."""
    path: str
    shape: str = "auto"
    mapping: dict[str, str] = field(default_factory=dict)
    task: str = ""           # default task for records that name none
    encoding: str | None = None


def parse_mapping(text: str) -> dict[str, str]:
    """``"user=ask,assistant=answer,task=department"`` -> dict; raises ValueError listing bad keys."""
    out, bad = {}, []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, col = part.partition("=")
        key, col = key.strip(), col.strip()
        if not sep or not col or key not in MAP_KEYS:
            bad.append(part)
        else:
            out[key] = col
    if bad:
        raise ValueError(f"bad --map entries {bad}: use KEY=COLUMN with KEY in {list(MAP_KEYS)}; "
                         "join columns with '+', e.g. user=title+ask")
    return out


def expand_inputs(patterns: list[str]) -> list[str]:
    """Globs and folders to a sorted list of readable files; raises InputError for a pattern that matches nothing."""
    files: list[str] = []
    for pat in patterns:
        if os.path.isdir(pat):
            found = [str(p) for p in sorted(Path(pat).rglob("*")) if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS]
        else:
            found = sorted(glob.glob(pat, recursive=True)) if any(c in pat for c in "*?[") else [pat]
        found = [f for f in found if os.path.isfile(f)]
        if not found:
            raise InputError(f"input {pat!r} matches no readable file")
        files.extend(f for f in found if f not in files)
    return files


# -- encodings --------------------------------------------------------------------------------

BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


_UNDECODABLE = re.compile("[\udc80-\udcff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
_LONG_UTF8 = re.compile("[\u0800-\ud7ff\ue000-\U0010ffff]")   # from 3- and 4-byte UTF-8 sequences
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def detect_encoding(path: str, sample_bytes: int = 1 << 20) -> str:
    """BOM first, then UTF-16 without BOM (NUL bytes never occur in 8-bit text), then UTF-8, then
    GB18030 (a superset of GBK/GB2312), then charset-normalizer.

    UTF-8 wins when nearly all its multi-byte sequences are valid: one corrupt line must not send
    the whole file to a guesser that decodes it as Cyrillic; that line is rejected on its own."""
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    if len(head) >= 4 and head.count(0) > len(head) // 200:
        return "utf-16-le" if head[1::2].count(0) >= head[0::2].count(0) else "utf-16-be"
    if len(head) == sample_bytes:   # do not judge a character cut at the sample's end
        head = head[:len(head) - 4] + head[len(head) - 4:].decode("utf-8", "ignore").encode("utf-8")
    as_utf8 = head.decode("utf-8", "surrogateescape")
    bad_utf8 = len(_UNDECODABLE.findall(as_utf8))
    # Other encodings' text forms valid UTF-8 sequences only by chance (about 1 in 10 characters
    # of GB18030 Chinese): many valid ones per invalid byte means UTF-8 with a few corrupt bytes.
    if bad_utf8 == 0 or len(_NON_ASCII.findall(as_utf8)) - bad_utf8 >= 3 * bad_utf8:
        return "utf-8"
    try:
        head.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 4 and len(head) >= sample_bytes - 4:
            return "gb18030"
    # Not GB18030 either.  A valid 3- or 4-byte UTF-8 sequence (a CJK character, an emoji) almost
    # never forms by chance in an 8-bit code page's text, while a UTF-8 file with little Chinese
    # and a few corrupt bytes is common: do not let a guesser decode all of it as Cyrillic.
    if len(_LONG_UTF8.findall(as_utf8)) >= bad_utf8:
        return "utf-8"
    from charset_normalizer import from_bytes
    best = from_bytes(head).best()
    return best.encoding if best else "utf-8"


def _storable(s: str, enc: str) -> str:
    """A raw line that failed to decode, kept whole and lossless: its bad bytes as \\xNN escapes."""
    return s.encode(enc, "surrogateescape").decode(enc, "backslashreplace")


def _lone_surrogate(value) -> str | None:
    """The first lone surrogate in a parsed JSON value (its strings, keys included), as ``\\udXXX``."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        return f"\\u{ord(m.group()):04x}" if m else None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next(filter(None, map(_lone_surrogate, items)), None)


def _surrogate_escapes(text: str) -> bool:
    """Could ``text`` (JSON) hold an escaped surrogate?  Most text has no ``\\u`` at all."""
    return "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


def _unicode_row(row, escapes: bool) -> tuple[object, str]:
    """``(row, "")``, or ``(UnicodeError, the row as ASCII JSON)`` when JSON escapes (``escapes``:
    its text has some) left a lone surrogate in the row: ``\\ud83d`` alone, an emoji cut in half
    by a truncation.  That is not Unicode; no Parquet or UTF-8 writer takes it, so the record is
    rejected here, not left to crash the run when it is written."""
    if not escapes or isinstance(row, Exception):
        return row, ""
    bad = _lone_surrogate(row)
    if bad is None:                       # escapes of whole pairs (an emoji) decode to one character
        return row, ""
    return UnicodeError(f"lone surrogate {bad} from a JSON escape (not Unicode: half of a cut emoji?)"), \
        json.dumps(row, ensure_ascii=True)


def _bad_chars(s: str) -> bool:
    # surrogateescape turns undecodable bytes into lone surrogates U+DC80..U+DCFF.
    return _UNDECODABLE.search(s) is not None


# -- shapes: one raw row -> messages ----------------------------------------------------------

def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):   # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in v)
    return v if isinstance(v, str) else str(v)


def detect_shape(row: dict, mapping: dict) -> str:
    if mapping.get("user") or mapping.get("assistant") or mapping.get("text"):
        return "columns"
    if "conversations" in row:
        return "sharegpt"
    if "messages" in row:
        return "messages"
    if "instruction" in row and "output" in row:
        return "alpaca"
    keys = {k.lower() if isinstance(k, str) else k for k in row}
    if any(c in keys for c in QUESTION_COLUMNS) and any(c in keys for c in ANSWER_COLUMNS):
        return "columns"
    if "text" in row or "content" in row:
        return "text"
    raise SchemaError(f"cannot tell the record's shape from its keys {sorted(map(str, row))[:8]}; "
                      "name it (shape: alpaca|sharegpt|messages|text) or map columns with --map")


def _col(row: dict, spec: str) -> str:
    parts = []
    for name in spec.split("+"):
        if name not in row:
            raise SchemaError(f"column {name!r} is missing (columns: {sorted(map(str, row))[:10]})")
        parts.append(_text(row[name]).strip())
    return "\n".join(p for p in parts if p)


def _auto_columns(row: dict) -> dict:
    lower = {k.lower(): k for k in row if isinstance(k, str)}
    q = next(lower[c] for c in QUESTION_COLUMNS if c in lower)
    a = next(lower[c] for c in ANSWER_COLUMNS if c in lower)
    return {"user": q, "assistant": a}


def to_messages(row: dict, shape: str, mapping: dict) -> tuple[list[dict], str | None]:
    """Return (messages, text) for one raw row of a known shape."""
    if shape == "alpaca":
        msgs = [{"role": "system", "content": _text(row["system"])}] if row.get("system") else []
        for turn in row.get("history") or []:
            if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
                raise SchemaError("alpaca history must be a list of [question, answer] pairs")
            msgs += [{"role": "user", "content": _text(turn[0])}, {"role": "assistant", "content": _text(turn[1])}]
        instruction, inp = _text(row.get("instruction")).strip(), _text(row.get("input")).strip()
        msgs.append({"role": "user", "content": f"{instruction}\n{inp}" if inp else instruction})
        msgs.append({"role": "assistant", "content": _text(row.get("output"))})
        return msgs, None
    if shape == "sharegpt":
        msgs = [{"role": "system", "content": _text(row["system"])}] if row.get("system") else []
        conv = row["conversations"]
        if not isinstance(conv, list):
            raise SchemaError("'conversations' is not a list")
        for i, turn in enumerate(conv):
            who = str(turn.get("from", turn.get("role", ""))).lower() if isinstance(turn, dict) else ""
            if who not in SHAREGPT_ROLES:
                raise SchemaError(f"conversation turn {i} is from {who!r}")
            msgs.append({"role": SHAREGPT_ROLES[who], "content": _text(turn.get("value", turn.get("content")))})
        return msgs, None
    if shape == "messages":
        msgs = row["messages"]
        if not isinstance(msgs, list):
            raise SchemaError("'messages' is not a list")
        out = []
        for i, m in enumerate(msgs):
            role = m.get("role") if isinstance(m, dict) else None
            role = "system" if role == "developer" else role
            if role not in ROLES:
                raise SchemaError(f"message {i} has role {role!r}")
            out.append({"role": role, "content": _text(m.get("content"))})
        return out, None
    if shape == "text":
        return [], _text(row.get("text", row.get("content")))
    if shape == "columns":
        m = mapping if (mapping.get("user") or mapping.get("text")) else {**_auto_columns(row), **mapping}
        if m.get("text"):
            return [], _col(row, m["text"])
        msgs = [{"role": "system", "content": _col(row, m["system"])}] if m.get("system") else []
        msgs += [{"role": "user", "content": _col(row, m["user"])},
                 {"role": "assistant", "content": _col(row, m["assistant"])}]
        return msgs, None
    raise SchemaError(f"unknown shape {shape!r}")


# -- raw rows from files ----------------------------------------------------------------------

def _json_array_rows(text: str) -> Iterator[tuple[int, object | Exception, str]]:
    """Decode a JSON array element by element so a break part-way keeps what came before it."""
    dec = json.JSONDecoder()
    pos, n = 0, len(text)
    line_at = _LineCounter(text)
    ws = re.compile(r"[\s,]*")
    pos = ws.match(text, pos).end()
    if not text.startswith("[", pos):
        try:   # a single object
            obj = json.loads(text)
            yield 1, obj, ""
        except json.JSONDecodeError as e:
            yield e.lineno, e, text
        return
    pos += 1
    while True:
        pos = ws.match(text, pos).end()
        if pos >= n or text[pos] == "]":
            return
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            rest = text[pos:].strip()   # all of it goes to rejects, so nothing is lost
            yield line_at(pos), json.JSONDecodeError(
                f"the JSON array breaks in the element that starts here ({e.msg}); the rest of the file "
                f"({len(rest):,} characters) is rejected", text, e.pos), rest
            return
        yield line_at(pos), obj, ""
        pos = end


class _LineCounter:
    """1-based line of a character offset, for offsets that only grow."""
    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def __call__(self, pos: int) -> int:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def raw_rows(path: str, encoding: str | None = None) -> Iterator[tuple[int, object, str]]:
    """Yield ``(line, row_or_exception, raw_snippet)`` for every row of a file."""
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: unknown file type {Path(path).suffix!r} (use .jsonl .json .csv .tsv .parquet)")
    if fmt == "parquet":
        import polars as pl
        for i, row in enumerate(pl.read_parquet(path).iter_rows(named=True), start=1):
            yield i, row, ""
        return
    enc = encoding or detect_encoding(path)
    with open(path, encoding=enc, errors="surrogateescape", newline="") as f:
        if fmt in ("jsonl", "txt"):
            for i, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                if _bad_chars(line):
                    yield i, UnicodeError(f"bytes not valid {enc}"), _storable(line, enc)
                    continue
                if fmt == "txt":
                    yield i, {"text": line.rstrip("\n")}, ""
                    continue
                try:
                    yield i, *_unicode_row(json.loads(line), _surrogate_escapes(line))
                except json.JSONDecodeError as e:
                    yield i, e, line
        elif fmt == "json":
            text = f.read()
            if _bad_chars(text):
                raise InputError(f"{path}: bytes not valid in detected encoding {enc}; name the encoding")
            stripped = text.lstrip()
            if stripped.startswith("{") and "\n{" in stripped:   # JSONL saved as .json
                f2 = io.StringIO(text)
                for i, line in enumerate(f2, start=1):
                    if line.strip():
                        try:
                            yield i, *_unicode_row(json.loads(line), _surrogate_escapes(line))
                        except json.JSONDecodeError as e:
                            yield i, e, line
                return
            escapes = _surrogate_escapes(text)            # searched once per file, not per element
            for i, row, raw in _json_array_rows(text):
                yield (i, row, raw) if isinstance(row, Exception) else (i, *_unicode_row(row, escapes))
        else:
            reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",")
            start = 2
            for row in reader:
                line = start
                start = reader.line_num + 1
                if None in row or any(v is None for v in row.values()):
                    yield line, ValueError(f"row has {len(row) - (None in row)} fields, header has "
                                           f"{len(reader.fieldnames or [])}"), json.dumps(row, ensure_ascii=False, default=str)
                    continue
                if any(_bad_chars(v) for v in row.values()):
                    yield line, UnicodeError(f"bytes not valid {enc}"), _storable(
                        json.dumps(row, ensure_ascii=False), enc)
                    continue
                yield line, row, ""


def read_source(spec: SourceSpec) -> Iterator[tuple[dict | None, dict | None]]:
    """Records (schema dicts) and read-rejects of one input file, in file order."""
    stem = Path(spec.path).stem
    # A record without an id of its own is named by its place in the file: its line, or for a
    # JSON array its element number (a whole array on one line is common).
    by_element = SUFFIX_FORMATS.get(Path(spec.path).suffix.lower()) == "json"
    for element, (line, row, raw) in enumerate(raw_rows(spec.path, spec.encoding), start=1):
        where = f"{spec.path}:{line}"
        place = f"{stem}:{element if by_element else line}"
        if isinstance(row, Exception):
            kind = "json" if isinstance(row, json.JSONDecodeError) else "encoding" if isinstance(row, UnicodeError) else "format"
            yield None, read_reject(spec.path, place, f"malformed:{kind}", f"{where}: {row}", raw)
            continue
        try:
            if not isinstance(row, dict):
                raise SchemaError(f"expected a JSON object, got {type(row).__name__}")
            shape = detect_shape(row, spec.mapping) if spec.shape == "auto" else spec.shape
            messages, text = to_messages(row, shape, spec.mapping)
            rid = _text(row.get(spec.mapping.get("id", "id"), "")).strip() or place
            task = _text(row.get(spec.mapping["task"])) if spec.mapping.get("task") else _text(row.get("task", ""))
            rec = make_record(rid, spec.path, messages=messages, text=text, task=task.strip() or spec.task,
                              meta={"format": shape, "line": line})
        except (SchemaError, KeyError, TypeError, AttributeError) as e:
            yield None, read_reject(spec.path, place, "malformed:record", f"{where}: {e}",
                                    json.dumps(row, ensure_ascii=False, default=str))
            continue
        yield rec, None


def read_reject(source: str, rid: str, reason: str, detail: str, raw: str = "") -> dict:
    return {"id": rid, "source": source, "task": "", "lang": "", "messages": [], "text": None,
            "meta": {"raw": raw} if raw else {}, "stage": "read", "reason": reason, "detail": detail,
            "duplicate_of": None, "similarity": None}
