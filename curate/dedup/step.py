"""The ``dedup`` step of ``curate run`` (and the whole of ``curate dedup``): exact and near
duplicates, clustered, one record kept per cluster, every other one rejected with
``duplicate_of`` (the kept id) and its similarity to it.  The engine is in engine.py.

Options (``steps: dedup:`` in the YAML config):

    threshold: 0.55    Jaccard similarity of shingle sets at which two texts are near-duplicates
    fields: auto       SFT records: "prompt,answer" (both must be near-duplicates), or e.g. "answer",
                       "all" (the whole dialogue); plain documents always compare their whole text
    keep: first        which record of a cluster stays: first | longest | quality
    quality_key: quality   meta key read by keep: quality
    n_cjk: 3, n_word: 1    shingle sizes: CJK characters, words of space-separated text
    own: 2             words: two texts that reach the threshold are still not duplicates when
                       each has content of its own (a sentence, a start or an end; or one says
                       something else where the other has 4x as much); a Chinese character is
                       half a word; 0 switches the check off.  See verify.py
    num_perm: 128, seed: 1  MinHash permutations (datasketch-compatible)
    index: ""          a folder: deduplicate against every set curated with this index before,
                       then add this run's kept records to it (incremental dedup)
    batch_size: 5000   records per sketch batch (memory is bounded by this, not by the input)
    memory_mb: 1024    shingle data held in memory until verification; beyond it, batches wait
                       on disk in the work folder (about 1 MB per 1,000 records of 250 characters)
    workers: 0         threads for sketching and verifying (0: all cores; the kernels release the GIL)
"""
from __future__ import annotations

import os

import polars as pl

from ..step import Drop, Table, TableStep
from .clusters import KEEP_POLICIES

# The engine, sketch and index modules (and their compiled kernels) are imported where the dedup
# step works, so every other `curate` command that imports the pipeline does not load them.


def parse_fields(value) -> tuple[str, ...]:
    if value in (None, "", "auto"):
        return ("prompt", "answer")
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    return tuple(names)


class Dedup(TableStep):
    name = "dedup"
    defaults = {"threshold": 0.55, "fields": "auto", "keep": "first", "quality_key": "quality",
                "n_cjk": 3, "n_word": 1, "own": 2, "num_perm": 128, "seed": 1, "index": "",
                "batch_size": 5000, "memory_mb": 1024, "workers": 0}

    @classmethod
    def settings(cls, options: dict) -> Settings:
        from .sketch import Settings
        o = {**cls.defaults, **options}
        return Settings(threshold=float(o["threshold"]), num_perm=int(o["num_perm"]), seed=int(o["seed"]),
                        n_cjk=int(o["n_cjk"]), n_word=int(o["n_word"]), own=int(o["own"]),
                        sft_fields=parse_fields(o["fields"]),
                        quality_key=str(o["quality_key"]))

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        from .sketch import FIELD_VIEWS
        out = []
        t = options.get("threshold")
        if isinstance(t, (int, float)) and not 0 < t <= 1:
            out.append(f"threshold must be in (0, 1], got {t}")
        if options.get("keep") not in KEEP_POLICIES:
            out.append(f"keep must be one of {', '.join(KEEP_POLICIES)}, got {options.get('keep')!r}")
        fields = parse_fields(options.get("fields"))
        bad = [f for f in fields if f not in FIELD_VIEWS]
        if bad or not fields:
            out.append(f"fields: unknown {bad or fields} (use auto, or a comma list of {', '.join(FIELD_VIEWS)})")
        for key, lo in (("n_cjk", 1), ("n_word", 1), ("num_perm", 8), ("batch_size", 100), ("own", 0),
                        ("memory_mb", 0)):
            v = options.get(key)
            if isinstance(v, int) and v < lo:
                out.append(f"{key} must be at least {lo}, got {v}")
        if isinstance(options.get("n_cjk"), int) and isinstance(options.get("n_word"), int) \
                and max(options["n_cjk"], options["n_word"]) > 64:
            out.append("n_cjk and n_word must be at most 64")
        if options.get("index") and not out:
            from . import index as index_store
            problem = index_store.check(options["index"], cls.settings(options).signature())
            if problem:
                out.append(problem)
        return out

    def select(self, table: Table):
        from .engine import Engine
        o = self.options
        workers = o["workers"] or os.cpu_count() or 1
        engine = Engine(self.settings(o), self.ctx.work_dir, workers=workers, keep=o["keep"],
                        index=o["index"] or None, progress=self.ctx.show_progress,
                        memory_budget=int(o["memory_mb"]) << 20)
        result = engine.run(_frames(table, o["batch_size"]))
        self.report = result.report
        self.counts.update({"clusters_with_duplicates": sum(v for k, v in result.report["cluster_sizes"].items()
                                                            if k != "1")})
        for d in result.drops:
            yield d.id, Drop(d.reason, f"{d.reason.split(':')[1]} duplicate of {d.duplicate_of}",
                             duplicate_of=d.duplicate_of, similarity=d.similarity)


def _frames(table: Table, batch_size: int):
    """The table's parts regrouped into batches of about ``batch_size`` rows, only the columns
    dedup reads."""
    cols = ["id", "text", "messages", "meta"]
    pending, n = [], 0
    for part in table.parts:
        df = pl.read_parquet(part, columns=cols)
        pending.append(df)
        n += df.height
        if n >= batch_size:
            yield pl.concat(pending)
            pending, n = [], 0
    if pending:
        yield pl.concat(pending)
