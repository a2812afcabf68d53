"""report.json (counts a machine checks) and report.html (the same, for a person at a glance)."""
from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import polars as pl

LENGTH_BINS = [0, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def _merge(into: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict):
            _merge(into.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v
        else:
            into[k] = v


def _histogram(values: pl.Series) -> dict:
    order = [f"<{b}" for b in LENGTH_BINS[1:]] + [f">={LENGTH_BINS[-1]}"]
    import numpy as np
    counts = np.bincount(np.searchsorted(LENGTH_BINS[1:], values.to_numpy(), side="right"), minlength=len(order))
    return {k: int(n) for k, n in zip(order, counts) if n}


def answer_length_expr() -> pl.Expr:
    """Characters of the final assistant turn (or of the document) per record."""
    last = (pl.col("messages").list.eval(pl.element().filter(pl.element().struct.field("role") == "assistant"))
            .list.last().struct.field("content"))
    return pl.coalesce(last, pl.col("text")).fill_null("").str.len_chars().alias("n")


def answer_lengths(df: pl.DataFrame) -> pl.Series:
    return df.select(answer_length_expr()).to_series()


def build_report(seg_dirs: list[Path], final_parts: list[Path], sources, seconds: float) -> dict:
    from .pipeline import AccountingError
    totals: dict = {}
    stages = []
    for d in seg_dirs:
        seg: dict = {}
        for f in sorted(d.glob("*.counts.json")):
            _merge(seg, json.loads(f.read_text(encoding="utf-8")))
        stages.append(seg)
        _merge(totals, seg)
    # Only the few columns the report needs: the kept set itself may not fit in memory.
    kept = (pl.scan_parquet([str(p) for p in final_parts]).select("source", "lang", "task", answer_length_expr()).collect()
            if final_parts else pl.DataFrame(schema={"source": pl.Utf8, "lang": pl.Utf8, "task": pl.Utf8, "n": pl.UInt32}))
    reject_files = [str(p) for d in seg_dirs for p in d.glob("*.rejects.parquet")]
    rejects = (pl.scan_parquet(reject_files).select("source", "stage", "reason").collect() if reject_files
               else pl.DataFrame(schema={"source": pl.Utf8, "stage": pl.Utf8, "reason": pl.Utf8}))
    kept_by = dict(kept.group_by("source").len().iter_rows()) if kept.height else {}
    rej_by = dict(rejects.group_by("source").len().iter_rows()) if rejects.height else {}
    read = totals.get("read", {})
    per_source = {}
    for spec, role in sources:
        r, k, j = read.get(spec.path, 0), kept_by.get(spec.path, 0), rej_by.get(spec.path, 0)
        per_source[spec.path] = {"role": role, "read": r, "kept": k, "rejected": j}
        if r != k + j:
            raise AccountingError(f"{spec.path}: read {r} but kept {k} + rejected {j} = {k + j}")
    # The funnel: how many records enter and leave each step, in run order.
    funnel, n = [], sum(read.values())
    dropped = totals.get("dropped", {})
    for d in seg_dirs:
        names = d.name.split("-", 2)[2].split("+")
        for name in (["read"] if names == ["read"] else (["read"] + names if d is seg_dirs[0] else names)):
            gone = sum(dropped.get(name, {}).values())
            funnel.append({"stage": name, "in": n, "out": n - gone, "dropped": dropped.get(name, {})})
            n -= gone
    return {
        "totals": {"read": sum(read.values()), "kept": kept.height, "rejected": rejects.height},
        "sources": per_source,
        "funnel": funnel,
        "step_counts": totals.get("step_counts", {}),
        "step_report": totals.get("step_report", {}),
        "languages": dict(sorted(Counter(kept["lang"].to_list()).items(), key=lambda kv: -kv[1])) if kept.height else {},
        "tasks": {"before": dict(sorted(totals.get("tasks_read", {}).items(), key=lambda kv: -kv[1])),
                  "after": dict(sorted(Counter(kept["task"].to_list()).items(), key=lambda kv: -kv[1])) if kept.height else {}},
        "answer_length_chars": _histogram(kept["n"]) if kept.height else {},
        "seconds": round(seconds, 2),
        "records_per_second": round(sum(read.values()) / seconds, 1) if seconds > 0 else None,
    }


# -- HTML -------------------------------------------------------------------------------------

CSS = """body{font:14px/1.45 system-ui,'Noto Sans CJK SC',sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}.bar{background:#4c78a8;height:12px;display:inline-block}
.bar.drop{background:#e45756}.ok{color:#2a7}.bad{color:#c33}.grid{display:grid;grid-template-columns:1fr 1fr;gap:2em}"""


def bars(data: dict, cls: str = "", width: int = 320) -> str:
    if not data:
        return "<p><i>none</i></p>"
    top = max(data.values()) or 1
    rows = "".join(f"<tr><td>{html.escape(str(k) or '(none)')}</td><td class=n>{v:,}</td>"
                   f"<td><span class='bar {cls}' style='width:{max(1, int(width * v / top))}px'></span></td></tr>"
                   for k, v in data.items())
    return f"<table>{rows}</table>"


def write_html(path: Path, report: dict, title: str = "curate run report") -> None:
    from .writing import write_text
    t = report["totals"]
    src_rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{s['role']}</td><td class=n>{s['read']:,}</td><td class=n>{s['kept']:,}</td>"
        f"<td class=n>{s['rejected']:,}</td><td class={'ok' if s['read'] == s['kept'] + s['rejected'] else 'bad'}>"
        f"{'✓' if s['read'] == s['kept'] + s['rejected'] else '✗'}</td></tr>" for p, s in report["sources"].items())
    funnel = "".join(
        f"<tr><td>{html.escape(f['stage'])}</td><td class=n>{f['in']:,}</td><td class=n>{f['out']:,}</td>"
        f"<td>{'<br>'.join(f'{html.escape(r)}: {n:,}' for r, n in sorted(f['dropped'].items(), key=lambda kv: -kv[1]))}</td></tr>"
        for f in report["funnel"])
    counts = "".join(f"<h3>{html.escape(step)}</h3>{bars(dict(sorted(c.items(), key=lambda kv: -kv[1])[:20]))}"
                     for step, c in report["step_counts"].items())
    extra = "".join(f"<h3>{html.escape(step)}</h3><pre>{html.escape(json.dumps(r, ensure_ascii=False, indent=1)[:4000])}</pre>"
                    for step, r in report.get("step_report", {}).items())
    body = f"""<h1>{html.escape(title)}</h1>
<p><b>{t['read']:,}</b> read → <b>{t['kept']:,}</b> kept, <b>{t['rejected']:,}</b> rejected
({report['seconds']} s, {report['records_per_second']} records/s)</p>
<h2>Sources (read = kept + rejected)</h2><table><tr><th>source</th><th>role</th><th>read</th><th>kept</th><th>rejected</th><th></th></tr>{src_rows}</table>
<h2>Funnel by stage</h2><table><tr><th>stage</th><th>in</th><th>out</th><th>dropped by reason</th></tr>{funnel}</table>
<div class=grid><div><h2>Tasks before</h2>{bars(report['tasks']['before'])}</div><div><h2>Tasks after</h2>{bars(report['tasks']['after'])}</div></div>
<div class=grid><div><h2>Languages (kept)</h2>{bars(report['languages'])}</div><div><h2>Answer length, characters (kept)</h2>{bars(report['answer_length_chars'])}</div></div>
<h2>What the steps changed</h2>{counts or '<p><i>nothing</i></p>'}{extra}"""
    write_text(path, f"<!doctype html><html lang=zh><meta charset=utf-8><title>{html.escape(title)}</title>"
                     f"<style>{CSS}</style><body>{body}</body></html>")
