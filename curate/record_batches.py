"""What a worker process of `curate run` does: run the fused record steps over one batch and
write the batch's kept and rejected parts and its counts.

A module of its own, importing only the record steps it is handed: a worker started by
``spawn`` imports this, not the runner with its table steps (the dedup engine and
its compiled kernels, that a worker would never use).

    >>> from curate.steps.quality import Quality
    >>> segment = ("doc", [("quality", Quality, {})], Context())
    >>> [s.name for s in steps_for(*segment)]
    ['quality']
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .schema import rejects_frame, to_frame
from .step import Context, Drop, RecordStep
from .writing import write_json, write_parquet

# Steps built once per process and reused for every batch of the same segment.  Keyed by the
# whole segment (classes, options, context), not its name: two runs in one process (workers=1)
# with different options must not share steps.
_STEPS: dict[tuple, list[RecordStep]] = {}


def steps_for(name: str, step_cfgs: list[tuple[str, type, dict]], ctx: Context) -> list[RecordStep]:
    key = (name, tuple(cls for _, cls, _ in step_cfgs), repr([opts for _, _, opts in step_cfgs]), repr(ctx))
    if key not in _STEPS:
        _STEPS[key] = [cls(opts, ctx) for _step_name, cls, opts in step_cfgs]
    return _STEPS[key]


def process_batch(segment: tuple[str, list, Context], records: list[dict], read_rejects: list[dict], part: Path,
                  first: bool) -> dict:
    """Run the record steps over one batch; write its kept and rejected parts and its counts."""
    steps_now = steps_for(*segment)
    counts = {"read": Counter(), "dropped": {}, "step_counts": {}, "tasks_read": Counter()}
    kept, rejects = [], list(read_rejects)
    for step in steps_now:
        step.counts.clear()
    if first:
        for r in records:
            counts["read"][r["source"]] += 1
            counts["tasks_read"][r["task"]] += 1
        for r in read_rejects:
            counts["read"][r["source"]] += 1
    if read_rejects:
        counts["dropped"]["read"] = dict(Counter(r["reason"] for r in read_rejects))
    for rec in records:
        for step in steps_now:
            try:
                res = step.process(rec)
            except Exception as e:   # one odd record must not stop a million-record run: reject it, loudly
                res = Drop(f"error:{type(e).__name__}", f"step {step.name} raised on this record: {e}"[:500])
            if isinstance(res, Drop):
                rejects.append({**rec, "stage": step.name, "reason": res.reason, "detail": res.detail,
                                "duplicate_of": res.duplicate_of, "similarity": res.similarity})
                d = counts["dropped"].setdefault(step.name, {})
                d[res.reason] = d.get(res.reason, 0) + 1
                break
            rec = res
        else:
            kept.append(rec)
    for step in steps_now:
        if step.counts:
            counts["step_counts"][step.name] = dict(step.counts)
    write_parquet(part.with_suffix(".kept.parquet"), to_frame(kept))
    write_parquet(part.with_suffix(".rejects.parquet"), rejects_frame(rejects))
    counts = {k: dict(v) if isinstance(v, Counter) else v for k, v in counts.items()}
    write_json(part.with_suffix(".counts.json"), counts)   # written last: marks the part done
    return counts
