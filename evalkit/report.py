"""What a person reads: a terminal table and a self-contained HTML report (inline SVG and CSS,
no scripts, no CDN) with per-task bars, score distributions, worst items and, for choice
questions, the letter distribution of gold answers against predictions."""
from __future__ import annotations

import html
import math
import unicodedata
from collections import Counter

LABELS = {"bleu": "BLEU", "chrf": "chrF", "rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
          "em": "Exact match", "contains": "Contains", "choice_acc": "Choice accuracy",
          "choice_unparsed": "Unparsed answers"}
ITEM_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")


def _fmt(v, scale=1.0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.2f}" if scale > 1 else f"{v:.4f}"


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _rjust(s: str, n: int) -> str:
    return " " * max(0, n - _width(s)) + s


def format_table(summary: dict) -> str:
    """Metric, score, 95% interval and n; then each metric's per-task scores."""
    lines = [f"{'metric':<16}{'score':>10}  {'95% CI':<21}{'n':>7}"]
    for name, e in summary.items():
        ci = f"[{_fmt(e['ci_low'], e['scale'])}, {_fmt(e['ci_high'], e['scale'])}]" if e["ci_low"] is not None else ""
        lines.append(f"{name:<16}{_fmt(e['score'], e['scale']):>10}  {ci:<21}{e['n']:>7}")
    tasks = sorted({t for e in summary.values() for t in e["tasks"]})
    if len(tasks) > 1:
        lines.append("")
        widths = [max(_width(t), 7) for t in tasks]
        lines.append(f"{'per task':<18}" + "  ".join(_rjust(t, w) for t, w in zip(tasks, widths)))
        for name, e in summary.items():
            cells = [_fmt(e["tasks"][t]["score"], e["scale"]) if t in e["tasks"] else "-" for t in tasks]
            lines.append(f"  {name:<16}" + "  ".join(_rjust(c, w) for c, w in zip(cells, widths)))
    return "\n".join(lines)


def _esc(s) -> str:
    return html.escape(str(s if s is not None else ""))


def _task_bars(name: str, e: dict) -> str:
    """Horizontal bars per task with the 95% interval as a whisker."""
    tasks = list(e["tasks"].items())
    scale = e["scale"]
    left = min(300, max(120, 8 * max(_width(f"{t} (n={e['n']})") for t, e in tasks) + 12))
    w, row = 350 + left, 26
    h = row * len(tasks) + 24
    parts = [f'<svg width="{w}" height="{h}" role="img" aria-label="{_esc(LABELS.get(name, name))} per task">']
    x = lambda v: left + (w - left - 60) * max(0.0, min(1.0, (v or 0) / scale))   # noqa: E731
    for i, (task, t) in enumerate(tasks):
        y = 8 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" class="lbl">{_esc(task)} (n={t["n"]})</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{x(t["score"]) - left:.1f}" height="16" class="bar"/>')
        if t.get("ci_low") is not None:
            parts.append(f'<line x1="{x(t["ci_low"]):.1f}" x2="{x(t["ci_high"]):.1f}" y1="{y + 8}" y2="{y + 8}" class="ci"/>')
        end = max(x(t["score"]), x(t["ci_high"]) if t.get("ci_high") is not None else 0)
        parts.append(f'<text x="{end + 4:.1f}" y="{y + 13}" class="val">{_fmt(t["score"], scale)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="4" y2="{h - 12}" class="axis"/></svg>')
    return "".join(parts)


def _histogram(values: list[float], scale: float, bins: int = 10) -> str:
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, max(0, int(v / scale * bins)))] += 1
    top = max(counts) or 1
    w, h, bw = 260, 110, 24
    parts = [f'<svg width="{w}" height="{h + 20}" role="img">']
    for i, c in enumerate(counts):
        bh = (h - 10) * c / top
        parts.append(f'<rect x="{4 + i * (bw + 1)}" y="{h - bh:.1f}" width="{bw}" height="{bh:.1f}" class="bar">'
                     f'<title>{i * scale / bins:g}–{(i + 1) * scale / bins:g}: {c}</title></rect>')
    parts.append(f'<text x="4" y="{h + 14}" class="lbl">0</text><text x="{4 + bins * (bw + 1)}" y="{h + 14}" '
                 f'text-anchor="end" class="lbl">{scale:g}</text></svg>')
    return "".join(parts)


def _letter_bars(rows: list[dict]) -> str:
    gold = Counter(r["answer"] for r in rows)
    pred = Counter(r.get("extracted") or "none" for r in rows)
    letters = sorted(set(gold) | {k for k in pred if k != "none"}) + (["none"] if pred.get("none") else [])
    n = len(rows) or 1
    out = ['<table class="letters"><tr><th>letter</th><th>gold</th><th>predicted</th></tr>']
    for L in letters:
        g, p = gold.get(L, 0), pred.get(L, 0)
        out.append(f'<tr><td>{_esc(L)}</td><td><span class="hb" style="width:{200 * g / n:.0f}px"></span> {g}</td>'
                   f'<td><span class="hb alt" style="width:{200 * p / n:.0f}px"></span> {p}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _worst(rows: list[dict], metric: str, k: int = 15) -> str:
    scored = sorted((r for r in rows if metric in r), key=lambda r: r[metric])[:k]
    out = [f'<table class="items"><tr><th>id</th><th>task</th><th>{_esc(LABELS.get(metric, metric))}</th>'
           '<th>prompt</th><th>prediction</th><th>reference</th></tr>']
    for r in scored:
        ref = r.get("reference")
        ref = "\n---\n".join(ref) if isinstance(ref, list) else ref
        if ref is None and "answer" in r:
            ref = f"answer {r['answer']}" + (f": {r['choices']['ABCDEFGHIJ'.index(r['answer'])]}" if r.get("choices") else "")
        prompt = str(r["prompt"])
        prompt = prompt if len(prompt) <= 300 else "…" + prompt[-300:]   # the question, not the few-shot block
        out.append(f'<tr><td>{_esc(r["id"])}</td><td>{_esc(r["task"])}</td><td>{r[metric]:.3f}</td>'
                   f'<td>{_esc(prompt)}</td><td>{_esc(str(r["prediction"])[:400])}</td>'
                   f'<td>{_esc(str(ref)[:400])}</td></tr>')
    out.append("</table>")
    return "".join(out)


_CSS = """body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4}.items td{max-width:340px;white-space:pre-wrap;word-break:break-word}
.bar{fill:#4a7fc1}.ci{stroke:#222;stroke-width:2}.axis{stroke:#999}.lbl{font-size:12px;fill:#444}.val{font-size:11px;fill:#222}
.grid{display:flex;flex-wrap:wrap;gap:18px}.card{border:1px solid #e3e3e3;padding:8px 12px;border-radius:6px}
.hb{display:inline-block;height:10px;background:#4a7fc1}.hb.alt{background:#d9822b}.sig{font-family:monospace;font-size:11px;color:#555}
.fail{color:#b00020;font-weight:bold}.pass{color:#1b7f3b;font-weight:bold}"""


def render_html(summary: dict, rows: list[dict], title: str = "evalkit auto", gates: list[dict] | None = None) -> str:
    body = [f"<h1>{_esc(title)}</h1><p>{len(rows)} items · automatic scores screen, experts decide.</p>"]
    if gates:
        body.append("<h2>Gates</h2><ul>" + "".join(
            f'<li class="{"pass" if g["passed"] else "fail"}">{_esc(g["gate"])}: '
            f'{"pass" if g["passed"] else "FAIL"} (actual {_fmt(g.get("actual"))})</li>' for g in gates) + "</ul>")
    body.append('<h2>Summary</h2><table><tr><th>metric</th><th>score</th><th>95% interval</th><th>n</th>'
                '<th>signature</th></tr>')
    for name, e in summary.items():
        body.append(f'<tr><td>{_esc(LABELS.get(name, name))}</td><td>{_fmt(e["score"], e["scale"])}</td>'
                    f'<td>[{_fmt(e["ci_low"], e["scale"])}, {_fmt(e["ci_high"], e["scale"])}]</td><td>{e["n"]}</td>'
                    f'<td class="sig">{_esc(e["signature"])}</td></tr>')
    body.append("</table><h2>Per task</h2><div class='grid'>")
    for name, e in summary.items():
        body.append(f'<div class="card"><b>{_esc(LABELS.get(name, name))}</b><br>{_task_bars(name, e)}</div>')
    body.append("</div>")
    dists = [(m, [r[m] for r in rows if m in r]) for m in ITEM_METRICS]
    dists = [(m, v) for m, v in dists if v]
    if dists:
        body.append("<h2>Score distributions (per item)</h2><div class='grid'>")
        for m, v in dists:
            body.append(f'<div class="card"><b>{_esc(LABELS[m])}</b><br>{_histogram(v, summary[m]["scale"])}</div>')
        body.append("</div>")
    choice_rows = [r for r in rows if "answer" in r]
    if choice_rows:
        body.append("<h2>Choice questions: letters</h2><p>If predictions pile on one letter while the gold "
                    "answers are spread, accuracy near chance says nothing about knowledge.</p>")
        body.append(_letter_bars(choice_rows))
        wrong = [r for r in choice_rows if not r.get("correct")][:15]
        if wrong:
            body.append("<h2>Wrong or unparsed choice answers</h2>" + _worst(
                [{**r, "choice_correct": 0.0} for r in wrong], "choice_correct"))
    worst_metric = next((m for m in ("rougeL", "chrf", "bleu", "em") if any(m in r for r in rows)), None)
    if worst_metric:
        body.append(f"<h2>Worst items by {_esc(LABELS[worst_metric])}</h2>" + _worst(rows, worst_metric))
    return (f'<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
            f'<meta name="generator" content="evalkit auto"><style>{_CSS}</style></head><body>'
            + "".join(body) + "</body></html>")
