"""The runner: read every input, run the configured steps top to bottom, write the outputs.

    read -> [record steps, fused into one streaming pass] -> table step -> [record steps] -> ... -> outputs

Consecutive record steps run together over batches in worker processes (``record_batches.py``
is what a worker runs); each finished batch is
a Parquet part under ``OUT/.work/<run key>/`` written atomically, so an interrupted run resumes
where it stopped and a finished one (same inputs, config, versions and curate's code: the run
key) is a no-op.
Outputs: curated.parquet, rejects.parquet, report.json, report.html and manifest.json, which is
written last: an output folder without it is not a finished run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import polars as pl
from tqdm import tqdm

from . import __version__
from .dedup.step import Dedup
from .reading import SourceSpec, expand_inputs, read_source
from .record_batches import process_batch
from .schema import POLARS_SCHEMA, REJECT_SCHEMA, from_frame
from .step import Context, Table, TableStep
from .steps.balance import Balance
from .steps.fillers import Fillers
from .steps.history import History
from .steps.language import Language
from .steps.mix import Mix
from .steps.normalize import Normalize
from .steps.quality import Quality
from .steps.safety import Safety
from .writing import link_or_copy, write_json, write_jsonl, write_parquet

# The steps a run knows, in their default order.  A config switches any off or sets its options
# (``order:`` changes it).  history runs with the other record steps, before the table steps:
# one streaming pass instead of a second one over the whole set, dialogues that differ only in
# old turns meet in dedup, and balance counts the records history left.
STEP_CLASSES: dict[str, type] = {
    "normalize": Normalize,
    "language": Language,
    "fillers": Fillers,
    "safety": Safety,
    "quality": Quality,
    "history": History,
    "dedup": Dedup,
    "balance": Balance,
    "mix": Mix,
}
DEFAULT_ORDER = tuple(STEP_CLASSES)
# What a finished run leaves in --out (besides manifest.json, written last).
OUTPUT_NAMES = ("curated.parquet", "curated.jsonl", "rejects.parquet", "report.json", "report.html")


class AccountingError(RuntimeError):
    """kept + rejected != read for some source: a bug, never silently tolerated."""


@dataclass
class RunResult:
    out: Path
    report: dict
    up_to_date: bool = False


# -- planning ---------------------------------------------------------------------------------

def plan(step_names: list[str]) -> list[tuple[str, list[str]]]:
    """Group steps into segments: ("record", [names...]) runs fused, ("table", [name]) alone.
    The first segment is always a record segment: it also reads the inputs."""
    segments: list[tuple[str, list[str]]] = [("record", [])]
    for name in step_names:
        kind = "table" if issubclass(STEP_CLASSES[name], TableStep) else "record"
        if kind == "record" and segments[-1][0] == "record":
            segments[-1][1].append(name)
        else:
            segments.append((kind, [name]))
    return segments


def sources_of(cfg: dict) -> list[tuple[SourceSpec, str]]:
    out = []
    for item in cfg["inputs"]:
        for path in expand_inputs([item["path"]]):
            out.append((SourceSpec(path, item.get("shape", "auto"), item.get("map") or {}, item.get("task", ""),
                                   item.get("encoding")), item.get("role", "domain")))
    return out


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_digest(root: Path) -> str:
    """A short hash of every ``.py`` and ``.c`` file under ``root`` (paths and contents): in an
    editable install the version stays put while the code changes, and a run made by other code
    is not the same run."""
    h = hashlib.sha256()
    for path in sorted([*root.rglob("*.py"), *root.rglob("*.c")]):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": sys.version.split()[0], "curate": __version__,
           "curate_code": source_digest(Path(__file__).resolve().parent)}
    for pkg in ("polars", "datasketch", "langdetect", "numpy", "tokenizers", "sentencepiece", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def run_key(cfg: dict, inputs: list[dict], versions: dict) -> str:
    keyed = {k: v for k, v in cfg.items() if k not in ("out", "workers", "progress")}
    blob = json.dumps({"cfg": keyed, "inputs": inputs, "versions": versions}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


# -- record segments (in worker processes: see record_batches.py) ------------------------------

def _batches_from_inputs(sources, batch_size: int):
    """Yield (part_name, records, read_rejects) over all inputs; ids made unique across the run."""
    seen: set[str] = set()
    next_k: dict[str, int] = {}   # per qualified id, the next #k to try (repeats stay linear)
    for si, (spec, _role) in enumerate(sources):
        recs, rejs, bi = [], [], 0
        stem = Path(spec.path).stem
        for rec, rej in read_source(spec):
            if rec is not None:
                rid = rec["id"]
                if rid in seen:   # two inputs both number their records from 1: qualify by file
                    rec["meta"]["orig_id"] = rid
                    base = rid = f"{stem}:{rid}"
                    while rid in seen:
                        k = next_k.get(base, 2)
                        next_k[base] = k + 1
                        rid = f"{base}#{k}"
                    rec["id"] = rid
                seen.add(rid)
                recs.append(rec)
            else:
                rejs.append(rej)
            if len(recs) + len(rejs) >= batch_size:
                yield f"{si:04d}-{bi:06d}", recs, rejs
                recs, rejs, bi = [], [], bi + 1
        if recs or rejs or bi == 0:
            yield f"{si:04d}-{bi:06d}", recs, rejs


def _batches_from_parts(parts: list[Path]):
    from .schema import from_frame
    for p in parts:
        yield p.name.split(".")[0], list(from_frame(pl.read_parquet(p))), []


def run_record_segment(seg_dir: Path, names: list[str], cfg: dict, ctx: Context, sources, prev_parts,
                       progress: bool, log=print, pool: ProcessPoolExecutor | None = None) -> None:
    """Run fused record steps over batches: in ``pool`` (worker processes) when given, else here."""
    seg_dir.mkdir(parents=True, exist_ok=True)
    # The classes travel with the segment (pickled by name): a worker imports only those.
    segment = (seg_dir.name, [(n, STEP_CLASSES[n], cfg["steps"][n]) for n in names], ctx)
    first = prev_parts is None
    batches = _batches_from_inputs(sources, cfg["batch_size"]) if first else _batches_from_parts(prev_parts)
    desc = "read" + ("+" + "+".join(names) if names else "")
    bar = tqdm(desc=desc, unit="rec", disable=not progress, mininterval=1.0)
    skipped = [0]

    def unfinished(batches):
        # A batch whose counts file exists was finished by an earlier, interrupted run: skip it.
        # (tqdm's update() returns True when it redraws, so it cannot sit inside the condition.)
        for name, recs, rejs in batches:
            if (seg_dir / f"{name}.counts.json").exists():
                skipped[0] += 1
                bar.update(len(recs) + len(rejs))
            else:
                yield name, recs, rejs
    todo = unfinished(batches)
    if pool is None:
        for name, recs, rejs in todo:
            process_batch(segment, recs, rejs, seg_dir / name, first)
            bar.update(len(recs) + len(rejs))
    else:
        pending = []
        for name, recs, rejs in todo:
            pending.append((pool.submit(process_batch, segment, recs, rejs, seg_dir / name, first), len(recs) + len(rejs)))
            while len(pending) >= 2 * (cfg.get("workers") or os.cpu_count() or 1):   # bounded memory
                fut, n = pending.pop(0)
                fut.result()
                bar.update(n)
        for fut, n in pending:
            fut.result()
            bar.update(n)
    bar.close()
    if skipped[0]:
        log(f"resume: segment {seg_dir.name}: skipped {skipped[0]} batches finished by an earlier run")


def run_table_segment(seg_dir: Path, name: str, cfg: dict, ctx: Context, prev_parts: list[Path],
                      progress: bool) -> None:
    seg_dir.mkdir(parents=True, exist_ok=True)
    step: TableStep = STEP_CLASSES[name](cfg["steps"][name], ctx)
    drops = {rid: d for rid, d in step.select(Table(prev_parts))}
    drop_df = pl.DataFrame({"id": list(drops), "stage": [name] * len(drops),
                            "reason": [d.reason for d in drops.values()],
                            "detail": [d.detail for d in drops.values()],
                            "duplicate_of": [d.duplicate_of for d in drops.values()],
                            "similarity": [d.similarity for d in drops.values()]},
                           schema={"id": pl.Utf8, **{k: REJECT_SCHEMA[k] for k in
                                                     ("stage", "reason", "detail", "duplicate_of", "similarity")}})
    found = 0
    for p in prev_parts:
        part = seg_dir / p.name.split(".")[0]
        if not drops or not any(rid in drops for rid in pl.read_parquet(p, columns=["id"])["id"].to_list()):
            link_or_copy(p, part.with_suffix(".kept.parquet"))   # nothing dropped here: no rewrite
            continue
        df = pl.read_parquet(p)
        rej = df.join(drop_df, on="id", how="inner").select(list(REJECT_SCHEMA))
        found += rej.height
        write_parquet(part.with_suffix(".kept.parquet"), df.join(drop_df, on="id", how="anti"))
        write_parquet(part.with_suffix(".rejects.parquet"), rej)
    if found != len(drops):
        raise AccountingError(f"step {name} dropped {len(drops)} ids but only {found} are in the table")
    counts = {"read": {}, "dropped": {name: dict(Counter(d.reason for d in drops.values()))} if drops else {},
              "step_counts": {name: dict(step.counts)} if step.counts else {}, "tasks_read": {},
              "step_report": {name: step.report} if step.report else {}}
    write_json(seg_dir / "segment.counts.json", counts)


# -- the whole run ----------------------------------------------------------------------------

def run(cfg: dict, progress: bool = True, log=print) -> RunResult:
    out = Path(cfg["out"])
    sources = sources_of(cfg)
    versions = tool_versions()
    inputs = [{"path": s.path, "sha256": file_sha256(s.path), "bytes": os.path.getsize(s.path), "role": role}
              for s, role in sources]
    key = run_key(cfg, inputs, versions)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("run_key") == key and all((out / f).exists() for f in old.get("outputs", {})):
            log(f"up to date: {out} already holds this run (same inputs, config and versions); nothing to do")
            return RunResult(out, json.loads((out / "report.json").read_text(encoding="utf-8")), up_to_date=True)
        manifest_path.unlink()   # the folder is about to change: it no longer holds a finished run
    # An earlier run's outputs must not sit beside this run's work looking like its result.
    for name in OUTPUT_NAMES:
        (out / name).unlink(missing_ok=True)
    work = out / ".work" / key[:16]
    if out.joinpath(".work").exists():   # a different, unfinished run's leftovers
        for d in out.joinpath(".work").iterdir():
            if d != work:
                shutil.rmtree(d, ignore_errors=True)
    general = frozenset(s.path for s, role in sources if role == "general")
    started = time.time()
    prev_parts: list[Path] | None = None
    seg_dirs = []
    workers = cfg.get("workers") or os.cpu_count() or 1
    with ExitStack() as stack:
        pool = None   # one pool for all record segments: starting workers costs seconds each
        for i, (kind, names) in enumerate(plan(list(cfg["steps"]))):
            seg_dir = work / f"{i:02d}-{kind}-{'+'.join(names) or 'read'}"
            seg_dirs.append(seg_dir)
            done = seg_dir / "DONE"
            ctx = Context(seed=cfg["seed"], work_dir=seg_dir / "step", general_sources=general, show_progress=progress)
            if not done.exists():
                if kind == "record":
                    if pool is None and workers > 1:
                        pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=get_context("spawn")))
                    run_record_segment(seg_dir, names, cfg, ctx, sources, prev_parts, progress, log, pool)
                else:
                    run_table_segment(seg_dir, names[0], cfg, ctx, prev_parts, progress)
                done.write_text("ok")
            else:
                log(f"resume: segment {seg_dir.name} already done")
            prev_parts = sorted(seg_dir.glob("*.kept.parquet"))
    from .report import build_report, write_html
    report = build_report(seg_dirs, prev_parts, sources, time.time() - started)
    # Every output is written under .work first and moved into place together, manifest last:
    # a kill at any moment leaves either no outputs or all of them, and no manifest until then.
    final = work / "final"
    fmt = cfg.get("output_format", "parquet")
    curated_name = "curated.parquet" if fmt == "parquet" else "curated.jsonl"
    if fmt == "parquet":
        kept = pl.scan_parquet([str(p) for p in prev_parts]) if prev_parts else pl.DataFrame(schema=POLARS_SCHEMA).lazy()
        write_parquet(final / curated_name, kept)
    else:   # meta's keys differ between records: decode it per record, not as one polars struct
        write_jsonl(final / curated_name, (rec for p in prev_parts for rec in from_frame(pl.read_parquet(p))))
    reject_parts = sorted(str(p) for d in seg_dirs for p in d.glob("*.rejects.parquet"))
    rejects = pl.scan_parquet(reject_parts) if reject_parts else pl.DataFrame(schema=REJECT_SCHEMA).lazy()
    write_parquet(final / "rejects.parquet", rejects)
    write_json(final / "report.json", report)
    write_html(final / "report.html", report)
    out.mkdir(parents=True, exist_ok=True)
    for name in (curated_name, "rejects.parquet", "report.json", "report.html"):
        os.replace(final / name, out / name)
    manifest = {"run_key": key, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": cfg["seed"],
                "config": cfg, "inputs": inputs, "versions": versions,
                "outputs": {curated_name: report["totals"]["kept"], "rejects.parquet": report["totals"]["rejected"],
                            "report.json": None, "report.html": None}}
    write_json(manifest_path, manifest)
    shutil.rmtree(out / ".work", ignore_errors=True)
    return RunResult(out, report)
