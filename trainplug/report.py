"""What a run writes about itself: ``metrics.jsonl`` (one object per optimizer step: step, loss,
grad_norm, lr, tokens, tokens_per_s, and eval_loss where evaluated), ``events.jsonl`` (guard
actions, early stop, dropped records, resumes), TensorBoard scalars under ``tb/``, and
``report.html`` (loss curves as inline SVG, the events, the summary).

Lines are appended and flushed as they happen; a resume first rewrites ``metrics.jsonl``
(atomically) to the steps its checkpoint holds, so the file always describes one history.
"""
from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (a kill mid-write) is ignored."""
    rows = []
    if Path(path).exists():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


class RunLog:
    def __init__(self, out: Path, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None):
        self.out, self.enabled = Path(out), enabled
        self.metrics_path, self.events_path = self.out / "metrics.jsonl", self.out / "events.jsonl"
        self.tb = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self.truncate(resume_step)
        else:
            for p in (self.metrics_path, self.events_path):
                p.unlink(missing_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.out / "tb"), purge_step=resume_step + 1 if resume_step is not None else None)

    def truncate(self, step: int) -> None:
        """Keep only the metrics of steps up to ``step`` (after a resume or a rollback)."""
        if self.enabled:
            from curate.writing import write_jsonl
            write_jsonl(self.metrics_path, [r for r in read_jsonl(self.metrics_path) if r.get("step", 0) <= step])

    def _append(self, path: Path, row: dict) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    def metrics(self, row: dict) -> None:
        if not self.enabled:
            return
        self._append(self.metrics_path, row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(("eval/" if k.startswith("eval") else "train/") + k, v, row["step"])

    def event(self, kind: str, **fields) -> dict:
        row = {"event": kind, "time": round(time.time(), 3), **fields}
        if self.enabled:
            self._append(self.events_path, row)
            if self.tb is not None:
                self.tb.add_text("events", json.dumps(row, ensure_ascii=False, default=str), fields.get("step", 0))
        return row

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


# -- report.html ----------------------------------------------------------------------------------

def _svg_lines(series: dict[str, list[tuple[float, float]]], title: str, w: int = 640, h: int = 240) -> str:
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]
    if not pts:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    L, R, T, B = 48, 12, 24, 28
    sx = lambda x: L + (x - x0) / (x1 - x0) * (w - L - R)   # noqa: E731
    sy = lambda y: h - B - (y - y0) / (y1 - y0) * (h - T - B)   # noqa: E731
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{L}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{L}" y1="{h - B}" x2="{w - R}" y2="{h - B}" stroke="#888"/>',
             f'<line x1="{L}" y1="{T}" x2="{L}" y2="{h - B}" stroke="#888"/>',
             f'<text x="4" y="{T + 8}" font-size="11">{y1:.3g}</text><text x="4" y="{h - B}" font-size="11">{y0:.3g}</text>',
             f'<text x="{L}" y="{h - 8}" font-size="11">step {x0:g}</text>'
             f'<text x="{w - R - 60}" y="{h - 8}" font-size="11">step {x1:g}</text>']
    for k, (name, s) in enumerate(series.items()):
        s = [(x, y) for x, y in s if math.isfinite(y)]
        if not s:
            continue
        c = colors[k % len(colors)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{path}"/>')
        if len(s) < 40:
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{c}"/>' for x, y in s]
        parts.append(f'<text x="{w - R - 150}" y="{T + 14 * (k + 1)}" font-size="11" fill="{c}">{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


def write_report(out: Path, summary: dict) -> Path:
    out = Path(out)
    metrics, events = read_jsonl(out / "metrics.jsonl"), read_jsonl(out / "events.jsonl")
    train = [(r["step"], r["loss"]) for r in metrics if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in metrics if r.get("eval_loss") is not None]
    charts = [_svg_lines({"train loss": train, "eval loss": evals}, "Loss"),
              _svg_lines({"grad norm (before clipping)": [(r["step"], r["grad_norm"]) for r in metrics if "grad_norm" in r]}, "Gradient norm"),
              _svg_lines({"learning rate": [(r["step"], r["lr"]) for r in metrics if "lr" in r]}, "Learning rate"),
              _svg_lines({"tokens/s": [(r["step"], r["tokens_per_s"]) for r in metrics if "tokens_per_s" in r]}, "Throughput")]
    ev_rows = "".join(
        f"<tr><td>{html.escape(str(e.get('step', '')))}</td><td>{html.escape(e['event'])}</td>"
        f"<td><code>{html.escape(json.dumps({k: v for k, v in e.items() if k not in ('event', 'step', 'time')}, ensure_ascii=False, default=str))}</code></td></tr>"
        for e in events) or '<tr><td colspan="3">no events</td></tr>'
    sum_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, ensure_ascii=False, default=str))}</td></tr>"
                       for k, v in summary.items() if k != "config")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>trainplug sft report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}}
.charts svg{{margin:0 1em 1em 0;border:1px solid #eee}}</style></head><body>
<h1>trainplug sft: {html.escape(str(summary.get('status', '')))}</h1>
<div class="charts">{''.join(charts)}</div>
<h2>Events ({len(events)})</h2><table><tr><th>step</th><th>event</th><th>details</th></tr>{ev_rows}</table>
<h2>Summary</h2><table>{sum_rows}</table>
<h2>Resolved config</h2><pre>{html.escape(json.dumps(summary.get('config', {}), indent=2, ensure_ascii=False, default=str))}</pre>
</body></html>"""
    from curate.writing import write_text
    write_text(out / "report.html", page)
    return out / "report.html"


def manifest(summary: dict) -> dict:
    """The run's summary plus the tool versions and the input files' fingerprints."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    import hashlib
    versions = {"python": sys.version.split()[0]}
    for pkg in ("sftkit", "torch", "transformers", "peft", "tokenizers", "safetensors"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    cfg = summary.get("config", {})
    inputs = {}
    for key in ("data", "general"):
        p = cfg.get(key)
        if p and Path(p).exists():
            from .data import curated_file
            f = curated_file(p)
            inputs[key] = {"path": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
    return {**summary, "versions": versions, "inputs": inputs}
