"""`evalkit review import`: annotations from Label Studio (a server or an export file) into
RUN/review/annotations.jsonl, one row per (item, annotator).

    >>> from evalkit.review.importing import import_run
    >>> summary = import_run("runs/med", url="http://127.0.0.1:8080")       # or file="export.json"

Accepts Label Studio's JSON export (tasks with ``annotations``) and its JSON_MIN export (one flat
row per annotation).  Several annotators per item and partly filled annotations are kept as they
are; what cannot be joined is counted by reason, never silently dropped:

- ``cancelled``: the annotator skipped the task;
- ``empty``: an annotation that scored no dimension;
- ``superseded``: an older annotation by the same annotator on the same item (the newest wins);
- ``stale``: the task's key is not an item of the run now (the answer was regenerated);
- ``foreign``: a task without an evalkit key (added to the project by hand).
"""
from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from pathlib import Path

from curate.writing import write_json, write_jsonl

from ..rubric import parse_result
from .client import LabelStudioClient, ReviewError
from .export import REVIEW_DIR, item_key, read_items, tool_versions


def load_rubric_of(run: Path, rubric_path=None) -> dict:
    if rubric_path:
        from ..rubric import load_rubric
        return load_rubric(rubric_path)
    path = run / REVIEW_DIR / "rubric.json"
    if not path.is_file():
        raise ReviewError(f"{path} does not exist: run `evalkit review export` first, or pass --rubric")
    return json.loads(path.read_text(encoding="utf-8"))


def _annotator(completed_by, users: dict) -> str:
    if isinstance(completed_by, dict):
        return completed_by.get("email") or f"user:{completed_by.get('id')}"
    if isinstance(completed_by, int):
        return users.get(completed_by) or f"user:{completed_by}"
    return str(completed_by) if completed_by is not None else "unknown"


def _min_value(v, field: str):
    """JSON_MIN shapes: a rating comes as [{"rating": 4}], a choice as "safe" (or a list), a text as a
    string, a number as [{"number": 7}] or 7."""
    if isinstance(v, list) and v and isinstance(v[0], dict):
        v = v[0]
    if isinstance(v, dict):
        v = v.get(field)
    return v


def _min_values(rubric: dict, row: dict) -> dict:
    """A JSON_MIN row's rubric values, converted to the same shapes as parse_result gives."""
    result = []
    for dim in rubric["dimensions"]:
        v = row.get(dim["name"])
        if v is None:
            continue
        if dim["type"] == "rating":
            result.append({"from_name": dim["name"], "value": {"rating": _min_value(v, "rating")}})
        elif dim["type"] == "number":
            result.append({"from_name": dim["name"], "value": {"number": _min_value(v, "number")}})
        elif dim["type"] == "choice":
            v = _min_value(v, "choices")
            result.append({"from_name": dim["name"], "value": {"choices": v if isinstance(v, list) else [v]}})
        else:
            v = _min_value(v, "text")
            result.append({"from_name": dim["name"], "value": {"text": v if isinstance(v, list) else [v]}})
    return parse_result(rubric, result)


def annotation_rows(tasks: list, rubric: dict, users: dict | None = None) -> tuple[list[dict], Counter]:
    """(rows, counts by reason) from a Label Studio JSON or JSON_MIN export."""
    users = users or {}
    rows, counts = [], Counter()
    if not isinstance(tasks, list):
        raise ReviewError("a Label Studio export is a JSON list of tasks")
    for task in tasks:
        if not isinstance(task, dict):
            counts["malformed"] += 1
            continue
        if "annotations" in task or "data" in task:          # JSON export
            data = task.get("data") or {}
            for ann in task.get("annotations") or []:
                rows.append({"key": data.get("key"), "item_id": data.get("item_id"), "ls_task": task.get("id"),
                             "annotation": ann.get("id"), "annotator": _annotator(ann.get("completed_by"), users),
                             "cancelled": bool(ann.get("was_cancelled")), "updated_at": ann.get("updated_at"),
                             "lead_time": ann.get("lead_time"), "values": parse_result(rubric, ann.get("result"))})
        elif task.get("annotation_id") is not None:           # JSON_MIN: one row per annotation
            rows.append({"key": task.get("key"), "item_id": task.get("item_id"), "ls_task": task.get("id"),
                         "annotation": task.get("annotation_id"),
                         "annotator": _annotator(task.get("annotator"), users), "cancelled": False,
                         "updated_at": task.get("updated_at"), "lead_time": task.get("lead_time"),
                         "values": _min_values(rubric, task)})
    return rows, counts


def select_rows(rows: list[dict], valid_keys: set) -> tuple[list[dict], Counter]:
    """The rows the report joins: the newest non-empty annotation per (item, annotator)."""
    counts: Counter = Counter()
    latest: dict[tuple, dict] = {}
    for row in rows:
        if not row["key"]:
            counts["foreign"] += 1
        elif row["key"] not in valid_keys:
            counts["stale"] += 1
        elif row["cancelled"]:
            counts["cancelled"] += 1
        elif not row["values"]:
            counts["empty"] += 1
        else:
            slot = (row["key"], row["annotator"])
            old = latest.get(slot)
            if old is not None:
                counts["superseded"] += 1
                if (old["updated_at"] or "", old["annotation"] or 0) > (row["updated_at"] or "", row["annotation"] or 0):
                    continue
            latest[slot] = row
    kept = sorted(latest.values(), key=lambda r: (r["item_id"] or "", r["annotator"]))
    for r in kept:
        r.pop("cancelled", None)
    return kept, counts


def import_run(run, *, url: str | None = None, api_key: str | None = None, file=None,
               project_id: int | None = None, rubric_path=None, client: LabelStudioClient | None = None,
               attempts: int = 6) -> dict:
    """Pull annotations into RUN/review/annotations.jsonl (rewritten whole: the server or file is
    the source of truth) and RUN/review/import.json (counts by reason, source, versions)."""
    run = Path(run)
    if bool(file) == bool(url or client):
        raise ReviewError("give exactly one of --url (pull from the server) or --file (a Label Studio JSON export)")
    rubric = load_rubric_of(run, rubric_path)
    items = read_items(run)
    valid = {item_key(i) for i in items}
    out = run / REVIEW_DIR
    if file:
        try:
            tasks = json.loads(Path(file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ReviewError(f"{file} does not exist")
        except json.JSONDecodeError as e:
            raise ReviewError(f"{file}: not valid JSON (line {e.lineno}: {e.msg})")
        source, users = {"file": str(file)}, {}
    else:
        client = client or LabelStudioClient(url, api_key, attempts=attempts)
        manifest_path = out / "export.json"
        stored = (json.loads(manifest_path.read_text(encoding="utf-8")).get("project") or {}) \
            if manifest_path.is_file() else {}
        pid = project_id or (stored.get("id") if stored.get("url") == client.url else None)
        if not pid:
            raise ReviewError(f"no project for {client.url} in {manifest_path}: export first or pass --project ID")
        tasks = client.export_json(pid)
        users = client.users()
        source = {"url": client.url, "project": pid}
    rows, counts = annotation_rows(tasks, rubric, users)
    kept, reasons = select_rows(rows, valid)
    counts.update(reasons)
    write_jsonl(out / "annotations.jsonl", kept)
    summary = {"source": source, "imported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "rubric": rubric["name"], "tasks_seen": len(tasks), "annotations_seen": len(rows),
               "kept": len(kept), "not_kept": dict(sorted(counts.items())),
               "items_reviewed": len({r["key"] for r in kept}),
               "annotators": sorted({r["annotator"] for r in kept}),
               "dimensions_filled": {d["name"]: sum(d["name"] in r["values"] for r in kept)
                                     for d in rubric["dimensions"]},
               "versions": tool_versions()}
    write_json(out / "import.json", summary)
    return summary
