"""balance: cap how many records each task keeps, so one task does not drown the others.

Three rules, any combination (each gives every task a cap; a task keeps min(its records, caps)):

* ``counts: {肝病科: 300, "*": 500}``: explicit caps per task; ``"*"`` is the cap of tasks not named.
* ``equalize: true`` (every task down to the smallest task's size, after ``counts``) or
  ``equalize: 200`` (no task above 200).
* ``max_share: 0.3``: no task above 30% of the balanced set.  Solved exactly: the largest cap c
  with c <= max_share * sum(min(n_task, c)), so small tasks keep everything.  When it cannot hold
  (fewer than 1/max_share tasks) the step equalizes instead and says so in the report.

Which records of an over-cap task stay is a seeded choice (``ctx.seed``; see ``sampling.py``);
the rest go to rejects with reason ``balance:over_cap``.  Records from ``role: general`` inputs
are left to the mix step unless ``include_general: true``.  With no rule set the step keeps all.
The before/after distribution, the caps and why go to the report.

    steps:
      balance: {equalize: 200, max_share: 0.25}
"""
from __future__ import annotations

import polars as pl

from ..step import Drop, Table, TableStep
from .sampling import seeded_keep


def max_share_cap(sizes: list[int], share: float) -> int | None:
    """The largest cap c with c <= share * sum(min(n, c)); None when no positive cap satisfies it."""
    def holds(c: int) -> bool:
        return c <= share * sum(min(n, c) for n in sizes) + 1e-9
    lo, hi = 0, max(sizes, default=0)
    if hi == 0 or not holds(1):
        return None
    while lo < hi:   # holds() is true on [0, c*] and false after (its slack is concave, 0 at 0)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid - 1)
    return lo


class Balance(TableStep):
    name = "balance"
    defaults: dict = {
        "key": "task",             # the column to balance on (task, lang or source)
        "equalize": None,          # true: down to the smallest task; an integer n: at most n per task
        "max_share": 0.0,          # 0 < share <= 1: no task above this share of the result (0: off)
        "counts": {},              # explicit caps per task; "*" for the tasks not named
        "include_general": False,  # also balance records of role: general inputs (else mix decides them)
    }

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        out = []
        if options["key"] not in ("task", "lang", "source"):
            out.append(f"key: {options['key']!r} is not task, lang or source")
        eq = options["equalize"]
        if eq is not None and not isinstance(eq, bool) and not (isinstance(eq, int) and eq > 0):
            out.append(f"equalize: expected true/false or a positive integer, got {eq!r}")
        if not 0 <= options["max_share"] <= 1:
            out.append(f"max_share: expected a share between 0 and 1, got {options['max_share']!r}")
        for task, n in options["counts"].items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                out.append(f"counts.{task}: expected a non-negative integer, got {n!r}")
        return out

    def caps(self, sizes: dict[str, int]) -> tuple[dict[str, int], list[str]]:
        """Each task's cap (tasks without one are absent) and the rules that set them, in order:
        counts, then equalize, then max_share (each sees the sizes the previous ones left)."""
        o, caps, rules = self.options, {}, []

        def cap_all(c: int) -> None:
            for t in sizes:
                caps[t] = min(caps.get(t, c), c)

        def left() -> dict[str, int]:
            return {t: min(n, caps.get(t, n)) for t, n in sizes.items()}

        if o["counts"]:
            for t in sizes:
                n = o["counts"].get(t, o["counts"].get("*"))
                if n is not None:
                    caps[t] = n
            rules.append("counts")
        eq = o["equalize"]
        if eq is True:
            level = min(left().values())
            cap_all(level)
            rules.append(f"equalize to the smallest ({level})")
        elif eq not in (None, False):
            cap_all(eq)
            rules.append(f"equalize to {eq}")
        share = o["max_share"]
        if share:
            sizes_left = left()
            if share * len(sizes_left) < 1:   # k tasks cannot each be under 1/k
                c = min(sizes_left.values())
                rules.append(f"max_share {share} cannot hold with {len(sizes_left)} tasks "
                             f"(equal shares are 1/{len(sizes_left)}): equalized to {c} instead")
            else:
                c = max_share_cap(list(sizes_left.values()), share)
                rules.append(f"max_share {share} (cap {c})")
            cap_all(c)
        return caps, rules

    def select(self, table: Table):
        key = self.options["key"]
        df = table.columns("id", key, "source")
        if not self.options["include_general"] and self.ctx.general_sources:
            df = df.filter(~pl.col("source").is_in(list(self.ctx.general_sources)))
        ids_by: dict[str, list[str]] = {}
        for rid, value in zip(df["id"].to_list(), df[key].to_list()):
            ids_by.setdefault(value or "", []).append(rid)
        sizes = {t: len(ids) for t, ids in sorted(ids_by.items(), key=lambda kv: -len(kv[1]))}
        if not sizes or (self.options["equalize"] in (None, False) and not self.options["max_share"]
                         and not self.options["counts"]):
            self.report = {"key": key, "rules": ["none configured: kept all"], "before": sizes, "after": sizes}
            return
        caps, rules = self.caps(sizes)
        after = {}
        for task, ids in ids_by.items():
            cap = caps.get(task)
            if cap is None or len(ids) <= cap:
                after[task] = len(ids)
                continue
            keep = seeded_keep(ids, cap, self.ctx.seed)
            after[task] = len(keep)
            self.counts[f"capped:{task}"] = len(ids) - len(keep)
            detail = f"{key} {task!r} has {len(ids)} records, capped at {cap} ({'; '.join(rules)})"
            for rid in ids:
                if rid not in keep:
                    yield rid, Drop("balance:over_cap", detail)
        named = set(self.options["counts"]) - {"*"}
        self.report = {
            "key": key, "rules": rules,
            "caps": {t: c for t, c in caps.items() if c < sizes[t]},
            "before": sizes,
            "after": dict(sorted(after.items(), key=lambda kv: -kv[1])),
            **({"unknown_tasks_in_counts": sorted(named - set(sizes))} if named - set(sizes) else {}),
            **({"short_of_count": {t: {"count": self.options["counts"][t], "have": sizes[t]}
                                   for t in sorted(named & set(sizes)) if sizes[t] < self.options["counts"][t]}}
               if any(sizes[t] < self.options["counts"][t] for t in named & set(sizes)) else {}),
        }
