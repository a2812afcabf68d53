"""report.html for `evalkit report`: one self-contained page (no scripts, no network) that a reviewer
lead reads at a glance.  Every value comes from the report dict; this module only lays it out."""
from __future__ import annotations

import html
import json

GENERATOR = "evalkit report"


def _e(v) -> str:
    return html.escape("" if v is None else str(v))


def _num(v, nd=3) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def _label(dim: dict) -> str:
    return f"{_e(dim['label']['zh'])}<br><small>{_e(dim['label']['en'])}</small>"


def _bar(mean, low, high, lo, hi, width=220) -> str:
    """A mean with its interval on the dimension's own scale, as inline SVG."""
    if mean is None or lo is None or hi == lo:
        return ""
    x = lambda v: 10 + (width - 20) * (v - lo) / (hi - lo)   # noqa: E731
    parts = [f'<svg width="{width}" height="22" role="img" aria-label="mean {mean:.2f}">',
             f'<line x1="10" y1="11" x2="{width - 10}" y2="11" stroke="#ddd" stroke-width="6"/>']
    if low is not None and high is not None:
        parts.append(f'<line x1="{x(low):.1f}" y1="11" x2="{x(high):.1f}" y2="11" stroke="#7aa6d8" stroke-width="6"/>')
    parts.append(f'<circle cx="{x(mean):.1f}" cy="11" r="5" fill="#1f4e8c"/>')
    parts.append(f'<text x="10" y="21" font-size="8" fill="#888">{lo:g}</text>'
                 f'<text x="{width - 16}" y="21" font-size="8" fill="#888">{hi:g}</text></svg>')
    return "".join(parts)


def _rho_cell(rho, n) -> str:
    if rho is None:
        return f'<td class="na">—<br><small>n={n}</small></td>'
    # blue for agreement with experts, red for the opposite; strength by opacity
    color = f"rgba(31,78,140,{abs(rho):.2f})" if rho >= 0 else f"rgba(190,40,40,{abs(rho):.2f})"
    fg = "#fff" if abs(rho) > 0.5 else "#000"
    return f'<td style="background:{color};color:{fg}">{rho:+.2f}<br><small>n={n}</small></td>'


def _snippet(text, n=160) -> str:
    text = str(text or "")
    return _e(text if len(text) <= n else text[:n] + "…")


def render_html(report: dict) -> str:
    dims = {d["name"]: d for d in report["dimensions"]}
    scored = [n for n in report["human"]]
    numeric = [n for n in scored if report["human"][n]["level"] != "nominal"]
    c = report["counts"]
    out = [f"""<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<title>评审报告 Review report · {_e(report['rubric']['name'])}</title>
<style>
body {{ font-family: system-ui, "Noto Sans CJK SC", "PingFang SC", sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
th, td {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; font-size: 13px; }}
th {{ background: #f4f4f6; }}
td.na {{ color: #999; }}
small {{ color: #666; }}
.note {{ background: #fff8e0; padding: 8px 12px; border-radius: 6px; }}
.pos {{ color: #b02a2a; }} .neg {{ color: #1f4e8c; }}
</style></head><body>
<h1>评审报告 · Review report</h1>
<p>{_e(report['run'])} · rubric <b>{_e(report['rubric']['title']['zh'])} · {_e(report['rubric']['title']['en'])}</b>
(v{_e(report['rubric']['version'])}) · {_e(report['created'])}</p>
<p class="note">自动评分用于筛查，专家做决定。Automatic scores screen; experts decide.
{c['reviewed']} of {c['items_in_run']} items reviewed ({c['annotations']} annotations by {c['annotators']} annotators).</p>
"""]
    if report.get("auto_report"):
        out.append(f'<p>自动评测报告 The automatic report: <a href="{_e(report["auto_report"])}">{_e(report["auto_report"])}</a></p>')

    out.append("<h2>专家评分 · Expert scores</h2><table><tr><th>维度 Dimension</th><th>均值 Mean</th>"
               "<th>95% CI</th><th></th><th>全集估计 Run estimate</th><th>n items</th><th>n ratings</th>"
               "<th>Krippendorff α</th></tr>")
    for name in scored:
        h, a = report["human"][name], report["agreement"][name]
        if h["level"] == "nominal":
            dist = ", ".join(f"{_e(v)} {s:.0%}" for v, s in h["distribution"].items())
            out.append(f"<tr><td>{_label(dims[name])}</td><td colspan=4>{dist}</td><td>{h['n']}</td>"
                       f"<td>{h['n_ratings']}</td><td>{_num(a['krippendorff_alpha'])} <small>{a['level']}</small></td></tr>")
            continue
        lo, hi = h["scale"]
        out.append(f"<tr><td>{_label(dims[name])}</td><td><b>{_num(h['mean'], 2)}</b></td>"
                   f"<td>[{_num(h['ci_low'], 2)}, {_num(h['ci_high'], 2)}]</td>"
                   f"<td>{_bar(h['mean'], h['ci_low'], h['ci_high'], lo, hi)}</td><td>{_num(h.get('mean_run'), 2)}</td>"
                   f"<td>{h['n']}</td><td>{h['n_ratings']}</td>"
                   f"<td>{_num(a['krippendorff_alpha'])} <small>{a['level']}</small></td></tr>")
    out.append("</table>")

    out.append("<h2>标注者一致性 · Agreement between annotators</h2>"
               "<p><small>Krippendorff's α (1 = perfect, 0 = chance; ≥ 0.667 is the usual floor for tentative "
               "conclusions) and Cohen's κ for each pair (κ<sub>w</sub>: quadratic weights).</small></p>"
               "<table><tr><th>维度 Dimension</th><th>α</th><th>pairable items</th><th>Cohen's κ per pair</th></tr>")
    for name in scored:
        a = report["agreement"][name]
        pairs = "<br>".join(f"{_e(p)}: κ={_num(v['kappa'])}" + (f", κ<sub>w</sub>={_num(v['kappa_quadratic'])}"
                                                               if "kappa_quadratic" in v else "") + f" (n={v['n']})"
                            for p, v in a["cohen_kappa"].items()) or "—"
        out.append(f"<tr><td>{_label(dims[name])}</td><td>{_num(a['krippendorff_alpha'])}</td>"
                   f"<td>{a['units_pairable']}</td><td>{pairs}</td></tr>")
    out.append("</table>")

    corr = report["correlation"]
    out.append("<h2>自动指标与专家判断的相关性 · Can automatic screening be trusted here?</h2>"
               "<p><small>Spearman ρ between each metric and the experts' per-item mean, over reviewed items. "
               "Near 0 or negative: the metric does not track expert judgement in this domain.</small></p>")
    if corr and numeric:
        out.append("<table><tr><th>指标 Metric</th>" + "".join(f"<th>{_label(dims[n])}</th>" for n in numeric) + "</tr>")
        for m in corr:
            out.append(f"<tr><th>{_e(m)}</th>" + "".join(_rho_cell(corr[m].get(n), report["correlation_n"][m].get(n))
                                                         for n in numeric) + "</tr>")
        out.append("</table>")
    else:
        out.append("<p>—</p>")

    out.append("<h2>机器与专家分歧最大的条目 · Where machine and experts disagree most</h2>"
               "<p><small>Rank difference among reviewed items: positive = the metrics rank it higher than the "
               "experts do (screening would have passed a poor answer).</small></p>"
               "<table><tr><th>id</th><th>task</th><th>Δ rank</th><th>auto rank</th><th>expert rank</th>"
               "<th>问题 Prompt</th><th>回答 Answer</th><th>评语 Comments</th></tr>")
    for r in report["disagreements"]:
        cls = "pos" if r["disagreement"] > 0 else "neg"
        notes = "<br>".join(f"{_e(cm['annotator'])}: {_snippet(cm['text'], 120)}" for cm in r.get("comments") or [])
        out.append(f"<tr><td>{_e(r['id'])}</td><td>{_e(r['task'])}</td><td class={cls}>{r['disagreement']:+.2f}</td>"
                   f"<td>{_num(r['auto_rank'], 2)}</td><td>{_num(r['human_rank'], 2)}</td>"
                   f"<td>{_snippet(r['prompt'])}</td><td>{_snippet(r['prediction'])}</td><td>{notes}</td></tr>")
    out.append("</table>")

    if len(report["by_task"]) > 1:
        out.append("<h2>按任务 · By task</h2><table><tr><th>task</th><th>n</th>"
                   + "".join(f"<th>{_label(dims[n])}</th>" for n in numeric) + "</tr>")
        for task, t in report["by_task"].items():
            cells = "".join(f"<td>{_num(t['human'][n]['mean'], 2)} [{_num(t['human'][n]['ci_low'], 2)}, "
                            f"{_num(t['human'][n]['ci_high'], 2)}]</td>" for n in numeric)
            out.append(f"<tr><td>{_e(task)}</td><td>{t['n']}</td>{cells}</tr>")
        out.append("</table>")

    summary = (report.get("auto") or {}).get("summary")
    if isinstance(summary, dict):
        out.append("<h2>自动评测摘要 · Automatic summary (summary.json, all items of the run)</h2><table>"
                   "<tr><th>metric</th><th>score</th><th>95% CI</th><th>n</th><th>reviewed items' mean</th>"
                   "<th>signature</th></tr>")
        reviewed = report["auto"].get("reviewed_mean", {})
        for m, v in summary.items():
            if isinstance(v, dict) and "score" in v:
                ci = f"[{_num(v.get('ci_low'))}, {_num(v.get('ci_high'))}]" if v.get("ci_low") is not None else "—"
                out.append(f"<tr><td>{_e(m)}</td><td>{_num(v['score'])}</td><td>{ci}</td><td>{_e(v.get('n', ''))}</td>"
                           f"<td>{_num(reviewed.get(m))}</td><td><small>{_e(v.get('signature', ''))}</small></td></tr>")
        out.append("</table>")

    metrics = sorted({m for r in report["items"] for m in r["auto"]})
    out.append("<h2>逐条对照 · Every reviewed item, side by side</h2><table><tr><th>id</th><th>task</th>"
               + "".join(f"<th>{_e(m)}</th>" for m in metrics)
               + "".join(f"<th>{_label(dims[n])}</th>" for n in scored) + "</tr>")
    for r in report["items"]:
        cells = "".join(f"<td>{_num(r['auto'].get(m), 3)}</td>" for m in metrics)
        for n in scored:
            h = r["human"].get(n)
            if not h:
                cells += "<td class=na>—</td>"
            elif "mean" in h:
                cells += f"<td><b>{_num(h['mean'], 2)}</b><br><small>{_e(', '.join(f'{v:g}' for v in h['by_annotator'].values()))}</small></td>"
            else:
                cells += f"<td>{_e(', '.join(str(v) for v in h['by_annotator'].values()))}</td>"
        out.append(f"<tr><td>{_e(r['id'])}</td><td>{_e(r['task'])}</td>{cells}</tr>")
    out.append("</table>")
    out.append(f"<p><small>signature: {_e(report['signature'])}<br>versions: {_e(json.dumps(report['versions']))}"
               "</small></p></body></html>\n")
    return "\n".join(out)
