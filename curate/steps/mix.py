"""mix: domain and general records at a ratio, so fine-tuning on a domain keeps general skills.

``ratio: "D:G"`` counts records: the result holds at most G general records per D domain records
(``"1:5"``: five general per domain record; ``"2:1"``: one general per two domain records).
Inputs marked ``role: general`` in the config are general; every other input is domain.

* More general than the ratio needs: general keeps floor(domain * G / D), a seeded choice
  (``ctx.seed``, see ``sampling.py``); the rest go to rejects with reason ``mix:over_ratio``.
* Fewer: all general records stay and the report gives the achieved ratio; with
  ``downsample_domain: true`` the domain side is cut to floor(general * D / G) instead (reason
  ``mix:domain_over_ratio``), so the ratio holds exactly.

Quote the ratio in YAML: an unquoted ``1:5`` is read by YAML 1.1 as the base-60 number 65.

    inputs:
      - {path: medical.csv, map: "user=ask,assistant=answer"}
      - {path: alpaca_en/, role: general}
    steps:
      mix: {ratio: "1:5"}
"""
from __future__ import annotations

import re

import polars as pl

from ..step import Drop, Table, TableStep
from .sampling import seeded_keep

RATIO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


def parse_ratio(text: str) -> tuple[float, float]:
    """``"1:5"`` -> (1.0, 5.0); raises ValueError on anything else."""
    m = RATIO.match(text) if isinstance(text, str) else None
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"expected \"DOMAIN:GENERAL\" such as \"1:5\", got {text!r}")
    return float(m.group(1)), float(m.group(2))


class Mix(TableStep):
    name = "mix"
    defaults: dict = {
        "ratio": None,                 # "DOMAIN:GENERAL" record counts, e.g. "1:5" (none: keep all)
        "downsample_domain": False,    # when general is short, cut domain to hold the ratio exactly
    }

    @classmethod
    def problems(cls, options: dict) -> list[str]:
        r = options["ratio"]
        if r is None:
            return []
        if isinstance(r, int) and not isinstance(r, bool) and r >= 60:
            return [f"ratio: YAML read an unquoted ratio as the base-60 number {r} "
                    f"(e.g. 1:5 is 65); quote it: ratio: \"{r // 60}:{r % 60}\""]
        try:
            parse_ratio(r)
        except ValueError as e:
            return [f"ratio: {e}"]
        return []

    def select(self, table: Table):
        if self.options["ratio"] is None:
            self.report = {"note": "no ratio configured: kept all"}
            return
        d, g = parse_ratio(self.options["ratio"])
        general = list(self.ctx.general_sources)
        df = table.columns("id", "source").with_columns(pl.col("source").is_in(general).alias("general"))
        dom_ids = df.filter(~pl.col("general"))["id"].to_list()
        gen_ids = df.filter(pl.col("general"))["id"].to_list()
        n_dom, n_gen = len(dom_ids), len(gen_ids)
        want_gen = int(n_dom * g / d + 1e-9)
        keep_dom, keep_gen = n_dom, min(n_gen, want_gen)
        if n_gen < want_gen and self.options["downsample_domain"]:
            keep_dom = int(n_gen * d / g + 1e-9) if g else n_dom
        note = ("no inputs have role: general; nothing to mix" if not general else
                "general is short of the ratio: kept all of it" if n_gen < want_gen and keep_dom == n_dom else "")
        self.report = {
            "ratio": f"{d:g}:{g:g}", "domain": {"before": n_dom, "after": keep_dom},
            "general": {"before": n_gen, "after": keep_gen, "wanted": want_gen},
            "general_per_domain": {"target": round(g / d, 4),
                                   "achieved": round(keep_gen / keep_dom, 4) if keep_dom else None},
            **({"note": note} if note else {}),
        }
        for ids, n, reason, side in ((gen_ids, keep_gen, "mix:over_ratio", "general"),
                                     (dom_ids, keep_dom, "mix:domain_over_ratio", "domain")):
            if n >= len(ids):
                continue
            keep = seeded_keep(ids, n, self.ctx.seed)
            detail = f"{side} records beyond ratio {d:g}:{g:g} ({n_dom} domain, {n_gen} general)"
            for rid in ids:
                if rid not in keep:
                    yield rid, Drop(reason, detail)
