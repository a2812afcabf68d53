"""`evalkit review export`: a run's items as Label Studio tasks, offline (files) or pushed to a server.

    >>> from evalkit.review.export import export_run
    >>> manifest = export_run("runs/med", "rubrics/medical.yaml", sample=200)      # files only
    >>> manifest = export_run("runs/med", "rubrics/medical.yaml", url="http://127.0.0.1:8080")

Writes RUN/review/: ``tasks.json`` (Label Studio import JSON: data + the automatic scores as a
prediction), ``label_config.xml`` (the rubric's interface), ``rubric.json`` (the rubric, for
import and report) and ``export.json`` (the manifest: sample, keys, project; never the API key).
Every task carries ``data.key``, a hash of the item's id, prompt and prediction: a rerun adds
nothing twice, and a regenerated answer becomes a new task instead of inheriting old ratings.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from curate.writing import write_json, write_text

from ..rubric import both, label_config, load_rubric
from .client import LabelStudioClient, ReviewError
from .sampling import auto_scores, sample_items

REVIEW_DIR = "review"
MODEL_VERSION = "evalkit-auto"
# sacrebleu reports BLEU and chrF on 0-100; everything else is already a 0-1 score.
PERCENT_METRICS = {"bleu", "chrf"}
METRIC_LABELS = {"bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2",
                 "rougeL": "ROUGE-L", "em": "EM", "contains": "Contains", "correct": "选择题正确 Correct"}


def tool_versions() -> dict:
    out = {}
    for pkg in ("sftkit", "label-studio-sdk"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def read_items(run: Path) -> list[dict]:
    """RUN/items.jsonl (written by evalkit auto); refuses with every bad line listed."""
    path = Path(run) / "items.jsonl"
    if not path.is_file():
        raise ReviewError(f"{path} does not exist: run `evalkit auto` first (RUN is its --out folder)")
    items, problems, seen = [], [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{lineno}: not valid JSON ({e.msg})")
                continue
            if not isinstance(item, dict):
                problems.append(f"{path}:{lineno}: expected an object")
                continue
            missing = [k for k in ("id", "prompt", "prediction") if item.get(k) is None]
            if missing:
                problems.append(f"{path}:{lineno}: missing {', '.join(missing)}")
                continue
            if str(item["id"]) in seen:
                problems.append(f"{path}:{lineno}: duplicate id {item['id']!r}")
                continue
            seen.add(str(item["id"]))
            items.append(item)
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ReviewError(f"{path}: {len(problems)} bad line(s):\n" + "\n".join(f"  - {p}" for p in shown))
    if not items:
        raise ReviewError(f"{path} has no items")
    return items


def item_key(item: dict) -> str:
    raw = "\x1f".join(str(item.get(k) or "") for k in ("id", "prompt", "prediction"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def normalized(metric: str, value: float) -> float:
    v = value / 100.0 if metric in PERCENT_METRICS else value
    return min(1.0, max(0.0, v))


def screening_score(scores: dict[str, float]) -> float | None:
    """One 0-1 number per item (mean of the normalized metrics): the prediction's score, which the
    Label Studio data manager sorts by."""
    if not scores:
        return None
    return round(sum(normalized(m, v) for m, v in scores.items()) / len(scores), 4)


def format_scores(item: dict) -> str:
    parts = []
    for m, v in auto_scores(item).items():
        label = METRIC_LABELS.get(m, m)
        parts.append(f"{label} {v:.1f}" if m in PERCENT_METRICS else
                     f"{label} {int(v)}" if m in ("em", "contains", "correct") else f"{label} {v:.3f}")
    if "extracted" in item:
        parts.append(f"抽取答案 Extracted {item.get('extracted') or '—'}")
    return " · ".join(parts) or "—"


def _reference_text(item: dict) -> str:
    ref = item.get("reference")
    if isinstance(ref, list):
        ref = "\n---\n".join(str(r) for r in ref)
    if not ref and item.get("answer"):
        ref = f"正确选项 Answer: {item['answer']}"
    return str(ref or "—")


def screening_verdict(score: float | None, picked: dict) -> str:
    """The prediction's text: what screening concluded about the item, in a few words."""
    flags = []
    if picked.get("low", 0) >= 2 / 3:
        flags.append("偏低 low for its task")
    if picked.get("dispute", 0) >= 0.5:
        flags.append("指标分歧 metrics disagree")
    head = f"自动筛查 Screening score {score:.2f}" if score is not None else "自动筛查 Screening"
    return f"{head} · " + (" · ".join(flags) if flags else "无异常 nothing flagged")


def build_task(item: dict, picked: dict) -> dict:
    scores = auto_scores(item)
    data = {"key": item_key(item), "item_id": str(item["id"]), "task": str(item.get("task") or "default"),
            "prompt": str(item["prompt"]), "prediction": str(item["prediction"]),
            "reference": _reference_text(item), "auto_scores": format_scores(item),
            "sample_weight": picked["weight"]}
    # Numbers as their own columns, so the data manager can sort and filter on them.
    data.update({f"auto_{m}": v for m, v in scores.items()})
    task = {"data": data}
    score = screening_score(scores)
    if scores:
        task["predictions"] = [{"model_version": MODEL_VERSION, "score": score, "result": [
            {"from_name": "auto_scores", "to_name": "answer", "type": "textarea",
             "value": {"text": [screening_verdict(score, picked)]}}]}]
    return task


def instructions_html(rubric: dict) -> str:
    """The rubric as the project's instructions page (shown before labeling)."""
    parts = [f"<h2>{html.escape(both(rubric['title']))}</h2>"]
    if rubric.get("instructions"):
        parts.append(f"<p>{html.escape(rubric['instructions']['zh'])}</p>"
                     f"<p>{html.escape(rubric['instructions']['en'])}</p>")
    for dim in rubric["dimensions"]:
        parts.append(f"<h3>{html.escape(both(dim['label']))}</h3>")
        if dim.get("guidance"):
            parts.append(f"<p>{html.escape(both(dim['guidance']))}</p>")
        if dim["type"] == "rating":
            parts.append("<ul>" + "".join(f"<li><b>{k}</b>: {html.escape(both(t))}</li>"
                                          for k, t in dim["levels"].items()) + "</ul>")
        elif dim["type"] == "choice":
            parts.append("<ul>" + "".join(f"<li>{html.escape(both(o['label']))}</li>"
                                          for o in dim["options"]) + "</ul>")
    return "\n".join(parts)


def export_run(run, rubric_path, *, url: str | None = None, api_key: str | None = None,
               sample: int | None = None, seed: int = 0, title: str | None = None,
               project_id: int | None = None, overlap: int = 2, client: LabelStudioClient | None = None,
               batch_size: int = 500, attempts: int = 6) -> dict:
    """Write the review folder and, with ``url`` (or ``client``), create or update the project and
    import the tasks it lacks.  Returns the manifest written to RUN/review/export.json."""
    run = Path(run)
    rubric = load_rubric(rubric_path)
    items = read_items(run)
    if sample is not None and sample < 1:
        raise ReviewError(f"--sample must be at least 1, got {sample}")
    picked = sample_items(items, sample, seed=seed)
    tasks = [build_task(p["item"], p) for p in picked]
    xml = label_config(rubric)
    out = run / REVIEW_DIR
    manifest_path = out / "export.json"
    previous = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    if previous.get("rubric", {}).get("name") not in (None, rubric["name"]):
        raise ReviewError(f"{run} was exported for review with the {previous['rubric']['name']!r} rubric; "
                          f"a second rubric needs its own run folder (copy items.jsonl)")

    # Items exported before stay in the manifest (their tasks stay in the project): a smaller
    # --sample on a rerun never drops work already done.
    entries = {e["key"]: e for e in previous.get("items", []) if e["key"] in {item_key(i) for i in items}}
    for p, t in zip(picked, tasks):
        entries.setdefault(t["data"]["key"], {"key": t["data"]["key"], "item_id": t["data"]["item_id"],
                                              "task": t["data"]["task"], "weight": p["weight"], "low": p["low"],
                                              "dispute": p["dispute"], "inclusion": p["inclusion"]})
    all_tasks = {t["data"]["key"]: t for t in tasks}
    by_key = {item_key(i): i for i in items}
    for key, e in entries.items():
        if key not in all_tasks:
            all_tasks[key] = build_task(by_key[key], e)
    task_list = [all_tasks[k] for k in sorted(all_tasks, key=lambda k: (entries[k]["task"], entries[k]["item_id"]))]

    write_json(out / "rubric.json", rubric)
    write_text(out / "label_config.xml", xml + "\n")
    write_json(out / "tasks.json", task_list)
    per_task: dict[str, int] = {}
    for e in entries.values():
        per_task[e["task"]] = per_task.get(e["task"], 0) + 1
    manifest = {
        "run": str(run), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rubric": {"name": rubric["name"], "version": rubric["version"], "fingerprint": rubric["fingerprint"],
                   "path": str(rubric_path)},
        "items_in_run": len(items), "exported": len(entries), "per_task": per_task,
        "sample": {"n": sample, "seed": seed, "strategy": "stratified by task; weight 1+2*low+2*dispute of "
                   "per-task metric percentile ranks; Efraimidis-Spirakis keys"},
        "files": {"tasks": "tasks.json", "label_config": "label_config.xml", "rubric": "rubric.json"},
        "project": previous.get("project"), "versions": tool_versions(),
        "items": sorted(entries.values(), key=lambda e: (e["task"], e["item_id"])),
    }
    if url or client:
        client = client or LabelStudioClient(url, api_key, attempts=attempts)
        stored = manifest["project"] or {}
        remembered = stored.get("id") if stored.get("url") == client.url else None
        title = title or stored.get("title") or f"{run.resolve().name} · {rubric['title']['en']} ({rubric['name']})"
        settings = {"maximum_annotations": overlap, "show_collab_predictions": True, "show_instruction": True,
                    "expert_instruction": instructions_html(rubric),
                    "description": f"evalkit review of {run.resolve()} with rubric {rubric['name']} "
                                   f"v{rubric['version']}"}
        project, what = client.find_or_create_project(title, xml, project_id=project_id, remembered_id=remembered,
                                                      settings=settings)
        sync = client.sync_tasks(project.id, task_list, batch_size=batch_size)
        manifest["project"] = {"url": client.url, "id": project.id, "title": project.title, "interface": what,
                               "server_version": client.server_version(), **sync}
    write_json(manifest_path, manifest)
    return manifest
