"""The expert-review commands (`evalkit review export|import`, `evalkit report`, `evalkit rubric
validate|xml`), registered on the `evalkit` group by evalkit/cli.py.  Heavy imports stay inside the
commands so `evalkit --help` stays fast."""
from __future__ import annotations

import logging

import click

API_KEY_HELP = ("Label Studio API key: a legacy token or a personal access token (default: $LABEL_STUDIO_API_KEY; "
                "prefer the variable, a command-line value is visible in the process list).")


class _EchoHandler(logging.Handler):
    """Log lines (retries) to the current stderr, looked up at each line, not at setup."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _log_to_stderr() -> None:
    log = logging.getLogger("evalkit.review")
    if not any(isinstance(h, _EchoHandler) for h in log.handlers):
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("evalkit: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


@click.group()
def review() -> None:
    """Expert review in Label Studio: export items to rate, import the ratings."""


@review.command("export")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--rubric", "rubric_path", required=True, type=click.Path(dir_okay=False),
              help="Rubric YAML (rubrics/general.yaml, medical.yaml, legal.yaml or your own).")
@click.option("--url", help="Label Studio URL (e.g. http://127.0.0.1:8080). Without it only files are written.")
@click.option("--api-key", help=API_KEY_HELP)
@click.option("--sample", type=click.IntRange(min=1), help="Review N items: stratified by task, weighted toward "
              "low or disputed automatic scores (default: all).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--overlap", type=click.IntRange(1, 50), default=2, show_default=True,
              help="Annotators per item (the project's maximum annotations).")
@click.option("--project", "project_id", type=int, help="Use this project id instead of finding it by title.")
@click.option("--retries", type=click.IntRange(1, 20), default=6, show_default=True,
              help="Attempts per request on connection errors, 429 and 5xx (backoff 0.5 s, doubling).")
@click.option("--title", help="Project title (default: the run folder's name and the rubric).")
def review_export(run, rubric_path, url, api_key, sample, seed, overlap, project_id, retries, title):
    """Write RUN/review/ (tasks.json, label_config.xml) and, with --url, create or update the project
    and import the tasks it lacks.  Rerunning adds nothing twice.

    \b
    evalkit review export runs/med --rubric rubrics/medical.yaml --sample 200
    LABEL_STUDIO_API_KEY=... evalkit review export runs/med --rubric rubrics/medical.yaml --url http://127.0.0.1:8080
    """
    from ..rubric import RubricError
    from .export import export_run
    _log_to_stderr()
    try:
        m = export_run(run, rubric_path, url=url, api_key=api_key, sample=sample, seed=seed, title=title,
                       project_id=project_id, overlap=overlap, attempts=retries)
    except RubricError as e:
        raise click.ClickException(str(e))
    per_task = ", ".join(f"{t} {n}" for t, n in sorted(m["per_task"].items()))
    click.echo(f"{m['exported']} of {m['items_in_run']} items for review ({per_task})")
    click.echo(f"files: {run}/review/tasks.json (Label Studio import JSON), label_config.xml, export.json")
    p = m.get("project")
    if url and p:
        click.echo(f"project {p['id']} {p['title']!r} at {p['url']} (interface {p['interface']}): "
                   f"{p['added']} tasks added, {p['already_there']} already there"
                   + (f", {p['duplicates_removed']} duplicates removed" if p["duplicates_removed"] else ""))
        click.echo(f"label at {p['url']}/projects/{p['id']}/data")


@review.command("import")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--url", help="Label Studio URL to pull the annotations from.")
@click.option("--file", "file_", type=click.Path(dir_okay=False),
              help="A Label Studio export (JSON or JSON_MIN) instead of --url.")
@click.option("--api-key", help=API_KEY_HELP)
@click.option("--project", "project_id", type=int, help="Project id (default: the one export used).")
@click.option("--retries", type=click.IntRange(1, 20), default=6, show_default=True,
              help="Attempts per request on connection errors, 429 and 5xx (backoff 0.5 s, doubling).")
@click.option("--rubric", "rubric_path", type=click.Path(dir_okay=False),
              help="Rubric YAML (default: the one export saved in RUN/review/rubric.json).")
def review_import(run, url, file_, api_key, project_id, retries, rubric_path):
    """Pull the annotations (several annotators per item, partial allowed) into
    RUN/review/annotations.jsonl.

    \b
    evalkit review import runs/med --url http://127.0.0.1:8080
    evalkit review import runs/med --file project-3-at-2026-11-23.json
    """
    from .importing import import_run
    _log_to_stderr()
    s = import_run(run, url=url, api_key=api_key, file=file_, project_id=project_id, rubric_path=rubric_path,
                   attempts=retries)
    not_kept = ", ".join(f"{k} {v}" for k, v in s["not_kept"].items()) or "none"
    click.echo(f"{s['kept']} annotations on {s['items_reviewed']} items by {len(s['annotators'])} annotators "
               f"(from {s['annotations_seen']} seen on {s['tasks_seen']} tasks; not kept: {not_kept})")
    click.echo(f"written: {run}/review/annotations.jsonl, import.json")


@click.command("report")
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--rubric", "rubric_path", type=click.Path(dir_okay=False),
              help="Rubric YAML (default: RUN/review/rubric.json from the export).")
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many machine-vs-expert disagreements to list.")
def report(run, rubric_path, top):
    """Join automatic and expert scores: RUN/report.json and RUN/report.html.

    \b
    evalkit report runs/med
    """
    from .report import build_report
    r = build_report(run, rubric_path=rubric_path, top=top)
    click.echo(f"{r['counts']['reviewed']} reviewed items, {r['counts']['annotations']} annotations, "
               f"{r['counts']['annotators']} annotators")
    width = max([len(n) for n in r["human"]] + [9])
    click.echo(f"{'dimension':<{width}}  {'mean':>6}  {'95% CI':>15}  {'n':>4}  {'alpha':>6}")
    for name, h in r["human"].items():
        alpha = r["agreement"][name]["krippendorff_alpha"]
        if h["n"] == 0:
            click.echo(f"{name:<{width}}  no ratings yet")
            continue
        if h["mean"] is None:
            dist = ", ".join(f"{v} {s:.0%}" for v, s in h.get("distribution", {}).items())
            click.echo(f"{name:<{width}}  {dist}  n={h['n']}")
            continue
        ci = f"[{h['ci_low']:.2f}, {h['ci_high']:.2f}]" if h["ci_low"] is not None else "—"
        click.echo(f"{name:<{width}}  {h['mean']:>6.2f}  {ci:>15}  {h['n']:>4}  "
                   f"{'—' if alpha is None else f'{alpha:.3f}':>6}")
    for dim in [n for n, h in r["human"].items() if h["mean"] is not None][:3]:
        rhos = [f"{m} {v[dim]:+.2f}" for m, v in r["correlation"].items() if v.get(dim) is not None]
        if rhos:
            click.echo(f"Spearman with experts' {dim}: " + ", ".join(rhos))
    click.echo(f"written: {run}/report.json, {run}/report.html")


@click.group()
def rubric() -> None:
    """Review rubrics: check one, or print its Label Studio interface."""


@rubric.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def rubric_validate(file):
    """List every problem of a rubric YAML at once (exit 1 when there are any)."""
    from ..rubric import RubricError, load_rubric
    try:
        r = load_rubric(file)
    except RubricError as e:
        raise click.ClickException(str(e))
    click.echo(f"{file}: ok ({r['name']} v{r['version']}, {len(r['dimensions'])} dimensions: "
               + ", ".join(f"{d['name']} ({d['type']})" for d in r["dimensions"]) + ")")


@rubric.command("xml")
@click.argument("file", type=click.Path(dir_okay=False))
def rubric_xml(file):
    """Print the Label Studio labeling config (XML) built from a rubric."""
    from ..rubric import RubricError, label_config, load_rubric
    try:
        click.echo(label_config(load_rubric(file)))
    except RubricError as e:
        raise click.ClickException(str(e))


def register(group: click.Group) -> None:
    for command in (review, report, rubric):
        group.add_command(command)
