"""The near-dedup engine: four small stages that hand off through arrays and the spill.

    1 sketch     (threads, streaming, compiled)  records -> exact hash, shingle hashes, band keys
    2 candidates (vectorized)                    equal band keys -> candidate pairs
    3 verify     (threads, compiled)             sorted sets of the records in candidate pairs,
                                                 exact Jaccard of every compared field, own parts
    4 clusters   (vectorized)                    components, keeper per cluster, drops

Both cores work in threads: the compiled kernels (kernels.py) release the GIL.  Memory stays
bounded: batches stream through and only ids, 64-bit hashes and band keys stay in memory for
every record; shingle hashes wait in the spill (spill.py: in memory up to ``memory_budget``,
beyond it on disk under ``work_dir``, memory-mapped) until verification needs them.
The near-duplicate similarity reported for a dropped record is the exact Jaccard with the record
it names in ``duplicate_of`` (min over fields for SFT records), never a chained estimate.

    >>> import polars as pl, tempfile
    >>> frame = pl.DataFrame({"id": ["a", "b", "c"], "text": ["今天天气真好，我们去公园散步吧。",
    ...                                                      "今天天气真好,我们去公园散步吧!", "完全不同的一句话。"]})
    >>> result = Engine(Settings(), tempfile.mkdtemp(), workers=1).run([frame])
    >>> [(d.id, d.reason, d.duplicate_of) for d in result.drops]
    [('b', 'duplicate:exact', 'a')]
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import polars as pl
from tqdm import tqdm

from . import index as index_store
from . import spill
from .candidates import candidate_pairs
from .clusters import claim, components, priority_order, size_histogram
from .sketch import DOC, SFT, Settings, sketch_batch
from .verify import Spill


class Removal(NamedTuple):
    id: str
    reason: str            # duplicate:exact | duplicate:near
    duplicate_of: str      # the kept record's id
    similarity: float      # 1.0 for exact copies, else the exact Jaccard with the kept record


@dataclass
class Result:
    drops: list[Removal]
    report: dict = field(default_factory=dict)



class _Runner:
    """Runs a function over work items in threads (or inline for workers=1), a few in flight."""

    def __init__(self, workers: int):
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self.workers = workers

    def imap(self, fn, items: Iterable, in_flight: int | None = None):
        if self.pool is None:
            for it in items:
                yield fn(*it)
            return
        pending = []
        for it in items:
            pending.append(self.pool.submit(fn, *it))
            while len(pending) >= (in_flight or 2 * self.workers):
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


class Engine:
    def __init__(self, settings: Settings, work_dir: str | Path, *, workers: int = 2, keep: str = "first",
                 index: str | None = None, progress: bool = False, examples: int = 5,
                 memory_budget: int = 1 << 30):
        self.s, self.work_dir, self.workers = settings, Path(work_dir), max(1, workers)
        self.memory_budget = memory_budget      # bytes of spilled batches held in memory; beyond: on disk
        self.keep, self.index, self.progress, self.examples = keep, index, progress, examples
        self.n_fields = len(settings.sft_fields)

    # -- 1 sketch ---------------------------------------------------------------------------
    def _sketch(self, runner: _Runner, frames: Iterable[pl.DataFrame]) -> dict:
        batches = spill.Batches(self.work_dir / "spill", self.memory_budget)
        parts = []
        bar = tqdm(desc="dedup: sketch", unit="rec", disable=not self.progress, mininterval=1.0)
        for res in runner.imap(sketch_batch, ((frame, self.s) for frame in frames)):
            batches.add(res.pop("spill"))
            parts.append(res)
            bar.update(len(res["ids"]))
        bar.close()
        cat = lambda k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0)
        ids = pl.concat([p["ids"] for p in parts]) if parts else pl.Series("id", [], pl.Utf8)
        return {"ids": ids, "kind": cat("kind").astype(np.int8, copy=False),
                "exact": cat("exact").astype(np.uint64, copy=False),
                "keys": np.concatenate([p["keys"] for p in parts]) if parts else np.zeros((0, self.s.width), np.uint64),
                "nonempty": cat("nonempty").astype(bool, copy=False), "length": cat("length").astype(np.int64, copy=False),
                "quality": cat("quality").astype(np.float64, copy=False),
                "batch": np.repeat(np.arange(len(parts)), [len(p["ids"]) for p in parts]),
                "row": np.concatenate([np.arange(len(p["ids"])) for p in parts]) if parts else np.zeros(0, np.int64),
                "batches": batches.entries}

    # -- 3 verify ---------------------------------------------------------------------------
    def _similarity(self, all_: dict, a: np.ndarray, b: np.ndarray):
        """Exact similarity of pairs (a[i], b[i]) and whether the own-part check splits them."""
        n_f = np.where(all_["kind"][a] == SFT, self.n_fields, 1)
        loc = lambda x: np.stack((all_["batch"][x], all_["row"][x]), axis=1)
        return Spill(all_["batches"], self.n_fields).similarity(n_f, loc(a), loc(b), self.s.threshold, self.s.own, self.workers)

    def run(self, frames: Iterable[pl.DataFrame]) -> Result:
        t0 = time.time()
        times = {}
        runner = _Runner(self.workers)
        try:
            new = self._sketch(runner, frames)
            times["sketch"] = time.time() - t0
            prior = index_store.load(self.index, self.s.signature()) if self.index else None
            all_, n_prior = self._combine(prior, new)
            result = self._dedup(runner, all_, n_prior, times)
        finally:
            runner.close()
        if self.index:
            dropped = {d.id for d in result.drops}
            kept = np.array([i not in dropped for i in new["ids"].to_list()], dtype=bool)
            index_store.append(self.index, self.s.signature(), new, kept)
        times["total"] = time.time() - t0
        result.report["seconds"] = {k: round(v, 2) for k, v in times.items()}
        return result

    def _combine(self, prior: dict | None, new: dict) -> tuple[dict, int]:
        """Earlier kept records first (they win ties and are never dropped), then this run's.
        A record already in the index with the same id and text is this record itself (a
        re-run after an interrupted index update): the index copy is left out."""
        if not prior:
            return {**new, "prior": np.zeros(len(new["ids"]), bool)}, 0
        mine = set(zip(new["ids"].to_list(), new["exact"].tolist()))
        keep = np.array([(i, e) not in mine for i, e in zip(prior["ids"].to_list(), prior["exact"].tolist())],
                        dtype=bool)
        n_prior = int(keep.sum())
        off = len(prior["batches"])
        all_ = {"ids": pl.concat((prior["ids"].filter(keep), new["ids"])),
                "batches": prior["batches"] + new["batches"],
                "batch": np.concatenate((prior["batch"][keep], new["batch"] + off)),
                "prior": np.concatenate((np.ones(n_prior, bool), np.zeros(len(new["ids"]), bool))),
                "quality": np.concatenate((np.full(n_prior, np.nan), new["quality"]))}
        for k in ("kind", "exact", "keys", "nonempty", "length", "row"):
            all_[k] = np.concatenate((prior[k][keep], new[k]))
        return all_, n_prior

    def _dedup(self, runner, all_: dict, n_prior: int, times: dict) -> Result:
        t = time.time()
        n = len(all_["ids"])
        if n == 0:                             # an earlier step may have dropped everything
            return Result([], {"records": 0, "kept": 0, "removed": {"exact": 0, "near": 0}, "cluster_sizes": {}})
        exact = all_["exact"]
        # exact copies: every member of a run of equal hashes points at the run's first record
        by_hash = np.argsort(exact, kind="stable")
        ex_sorted = exact[by_hash]
        run_start = np.concatenate(([True], ex_sorted[1:] != ex_sorted[:-1]))
        rep_sorted = by_hash[np.maximum.accumulate(np.where(run_start, np.arange(n), 0))] if n else by_hash
        rep = np.empty(n, dtype=np.int64)
        rep[by_hash] = rep_sorted
        is_rep = rep == np.arange(n)
        ex_a, ex_b = rep_sorted[~run_start], by_hash[~run_start]
        # near: candidates among distinct texts, within one kind, never two earlier-kept records
        pairs = []
        for kind in (DOC, SFT):
            b, _ = self.s.lsh(kind)
            eligible = is_rep & all_["nonempty"] & (all_["kind"] == kind)
            if eligible.sum() > 1:
                pairs.append(candidate_pairs(all_["keys"][:, :b], eligible, self.workers))
        pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
        pairs = pairs[~(all_["prior"][pairs[:, 0]] & all_["prior"][pairs[:, 1]])]
        times["candidates"] = time.time() - t
        t = time.time()
        sims, split = self._similarity(all_, pairs[:, 0], pairs[:, 1])
        ok = (sims >= self.s.threshold) & ~split
        times["verify"] = time.time() - t
        t = time.time()
        prior = all_["prior"]
        order = priority_order(prior, all_["length"], all_["quality"], self.keep)
        # exact groups: the best member (by the policy) stands for the group
        best_of = np.empty(n, dtype=np.int64)
        best_of[rep[order[::-1]]] = order[::-1]
        best = best_of[rep]
        group_prior = np.zeros(n, bool)
        np.logical_or.at(group_prior, rep, prior)
        node_prior = prior | group_prior[rep]
        # near: greedy claims over verified edges between the groups' best members
        claimed_by, claim_sim = claim(n, best[pairs[ok, 0]], best[pairs[ok, 1]], sims[ok], order, node_prior)
        owner = np.where(claimed_by[best] >= 0, claimed_by[best], best)   # the kept record
        gone = np.flatnonzero((owner != np.arange(n)) & ~prior)
        is_exact = owner[gone] == best[gone]
        sim = np.where(is_exact, 1.0, claim_sim[best[gone]]).astype(np.float32)
        ids = all_["ids"]
        drops = [Removal(i, "duplicate:exact" if e else "duplicate:near", k, s) for i, e, k, s in
                 zip(ids.gather(gone).to_list(), is_exact.tolist(), ids.gather(owner[gone]).to_list(),
                     np.round(sim.astype(np.float64), 4).tolist())]   # 0.58, not float32's 0.5799999833
        label = components(n, np.concatenate((ex_a, pairs[ok, 0])), np.concatenate((ex_b, pairs[ok, 1])))
        times["clusters"] = time.time() - t
        report = self._report(all_, owner, label, gone, is_exact, sim, len(pairs), int(ok.sum()), n_prior)
        report["rejected_by_own_part_check"] = int(split.sum())
        return Result(drops, report)

    # -- report -----------------------------------------------------------------------------
    def _report(self, all_, owner, label, gone, is_exact, sim, n_cand, n_ok, n_prior) -> dict:
        new = ~all_["prior"]
        labels, sizes = np.unique(owner[new], return_counts=True)
        s = self.s
        rep = {
            "settings": {**s.signature(), "keep": self.keep, "lsh_doc": list(s.lsh(DOC)), "lsh_sft": list(s.lsh(SFT)),
                         "index": self.index, "index_records": n_prior},
            "records": int(new.sum()), "kept": int(new.sum() - len(gone)),
            "removed": {"exact": int(is_exact.sum()), "near": int((~is_exact).sum())},
            "candidate_pairs": int(n_cand), "verified_pairs": int(n_ok), "rejected_by_verification": int(n_cand - n_ok),
            "cluster_sizes": size_histogram(owner[new]),        # a kept record and what was dropped for it
            "component_sizes": size_histogram(label[new]),      # connected by verified edges
            "near_similarity": _sim_histogram(sim[~is_exact]),
            "largest_clusters": [],
        }
        top = labels[np.argsort(-sizes, kind="stable")][: self.examples]
        top = [lab for lab in top if sizes[labels == lab][0] > 1]
        if top:
            rep["largest_clusters"] = self._examples(all_, owner, gone, sim, top)
        return rep

    def _examples(self, all_, owner, gone, sim, top) -> list[dict]:
        sim_of = dict(zip(gone.tolist(), sim.tolist()))
        wanted = {}
        clusters = []
        for k in top:
            members = np.flatnonzero(owner == k)
            k = int(k)
            shown = [int(m) for m in members if m != k][:3]
            clusters.append((k, len(members), shown))
            for m in [k, *shown]:
                wanted.setdefault(int(all_["batch"][m]), []).append(m)
        preview = {}
        for b, ms in wanted.items():
            for m in ms:
                preview[m] = spill.preview(all_["batches"][b], int(all_["row"][m]))
        ids = all_["ids"]
        return [{"size": size, "kept": {"id": ids[int(k)], "text": preview[k]},
                 "removed": [{"id": ids[int(m)], "similarity": round(sim_of.get(m, 1.0), 4), "text": preview[m]}
                             for m in shown]} for k, size, shown in clusters]


def _sim_histogram(sims: np.ndarray) -> dict[str, int]:
    edges = [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]
    counts, _ = np.histogram(sims, bins=edges)
    return {f"{lo:.1f}-{min(hi, 1.0):.1f}": int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts) if c}
