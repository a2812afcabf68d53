"""Expert review through Label Studio, joined with the automatic scores in one report.

The flow over a run folder (RUN, written by `evalkit auto`: items.jsonl + summary.json):

1. ``export.export_run``   items -> Label Studio tasks (sampled; files, or a project on a server)
2. experts rate the items in Label Studio (the labeling page is built from a rubric, ../rubric.py)
3. ``importing.import_run`` annotations -> RUN/review/annotations.jsonl
4. ``report.build_report``  RUN/report.json + RUN/report.html

Modules: client (the Label Studio API with safe retries), sampling, export, importing, stats,
report, html, localserver (start a real server for tests, benchmarks and local trials).
"""
