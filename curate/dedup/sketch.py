"""Stage 1 of near-dedup, run in threads over batches: records -> compared fields ->
normalized text -> exact hash, shingle hashes and MinHash band keys.  The shingle hashes in text
order, each text's shingle size and its sentence ends go to the spill (spill.py: needed again
only to verify candidates, and kept in the persisted index); what the later stages hold for
every record is small: ids, hashes, band keys.

Which text is compared:

* a plain document (``text``, no messages): its whole text, one field;
* an SFT record: by default its prompt (system + user turns) and its answer (the final assistant
  turn) as two fields; two records are near-duplicates only when *both* fields are.  ``fields``
  can name others: ``prompt``, ``answer``, ``all`` (the whole dialogue as one text).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from ..schema import all_text, answer_text, prompt_text
from . import kernels, spill
from .shingles import MASK64, codepoints, mix64, sketch_texts
from .signatures import band_keys, lsh_params, permutations

DOC, SFT = 0, 1
LSH_MARGIN = 0.1
FIELD_VIEWS = {"prompt": prompt_text, "answer": answer_text, "all": all_text}


@dataclass(frozen=True)
class Settings:
    threshold: float = 0.55
    num_perm: int = 128
    seed: int = 1
    n_cjk: int = 3
    n_word: int = 1
    sft_fields: tuple[str, ...] = ("prompt", "answer")
    quality_key: str = "quality"
    own: int = 2            # words: own-part check (verify.py); 0 switches it off

    def lsh(self, kind: int) -> tuple[int, int]:
        """Bands and rows: datasketch's optimum for a threshold LSH_MARGIN below ours, since a
        false candidate only costs one exact check but a missed pair is never seen again.  For
        k fields banded together a band matches with probability about prod(J_f ** rows), so
        the S-curve is centred on that threshold ** k."""
        k = 1 if kind == DOC else len(self.sft_fields)
        return lsh_params(round(max(0.05, self.threshold - LSH_MARGIN) ** k, 6), self.num_perm)

    @property
    def width(self) -> int:
        return max(self.lsh(DOC)[0], self.lsh(SFT)[0])

    def signature(self) -> dict:
        """What must match for an index built earlier to be usable now."""
        d = asdict(self)
        d.pop("quality_key")
        d["sft_fields"] = list(self.sft_fields)
        return d


def field_texts(frame: pl.DataFrame, settings: Settings) -> tuple[np.ndarray, list]:
    """Kind of each row (DOC or SFT) and the texts of the compared fields (docs use slot 0): a
    batch of plain documents keeps its texts in polars (no Python string per record)."""
    n_f = len(settings.sft_fields)
    texts = frame["text"].fill_null("") if "text" in frame.columns else pl.Series([""] * frame.height)
    kind = np.zeros(frame.height, dtype=np.int8)
    cols: list = [texts] + [[""] * frame.height for _ in range(n_f - 1)]
    if "messages" not in frame.columns:
        return kind, cols
    has_msgs = frame["messages"].list.len().fill_null(0).to_numpy() > 0
    if not has_msgs.any():
        return kind, cols
    texts = cols[0] = texts.to_list()
    msgs = frame["messages"].to_list()
    for i in np.flatnonzero(has_msgs).tolist():
        kind[i] = SFT
        rec = {"messages": msgs[i], "text": texts[i]}
        for f, name in enumerate(settings.sft_fields):
            cols[f][i] = FIELD_VIEWS[name](rec)
    return kind, cols


def sketch_batch(frame: pl.DataFrame, settings: Settings) -> dict:
    """Sketch one batch: the small arrays that stay in memory, and under ``spill`` what
    verification needs (spill.py)."""
    kind, cols = field_texts(frame, settings)
    perms = permutations(settings.num_perm, settings.seed)
    sigs, nonempty, spilled = [], np.zeros(frame.height, dtype=bool), {}
    exact = np.zeros(frame.height, dtype=np.uint64)
    raw = []                                      # each field's code points, as written
    for f, texts in enumerate(cols):
        if f > 0 and not kind.any():             # a batch of plain documents: field 0 only
            hv, off, ex = np.zeros(0, np.uint32), np.zeros(frame.height + 1, np.int64), np.zeros(frame.height, np.uint64)
            size, cut, tok_off = np.zeros(frame.height, np.uint8), np.zeros(0, np.uint8), off
            sig = np.zeros((frame.height, settings.num_perm), np.uint32)
            raw.append((hv, off))
        else:
            raw.append(codepoints(texts))
            hv, off, ex, sig, size, cut, tok_off = sketch_texts(texts, settings.n_cjk, settings.n_word, perms, raw[-1])
        exact += mix64(ex + np.uint64(((f + 1) * 0x9E3779B97F4A7C15) & MASK64))
        spilled.update({f"f{f}.hv": hv, f"f{f}.seqoff": off, f"f{f}.n": size, f"f{f}.cut": cut, f"f{f}.tokoff": tok_off})
        sigs.append(sig)
        nonempty |= np.diff(off) > 0
    exact = mix64(exact + kind.astype(np.uint64))
    keys = np.empty((frame.height, settings.width), dtype=np.uint64)
    # columns a kind does not use get values no other row has (the row's own text hash)
    keys[:] = exact[:, None] ^ (np.arange(settings.width, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))[None, :]
    for k in (DOC, SFT):
        rows = np.flatnonzero(kind == k)
        if len(rows):
            b, r = settings.lsh(k)
            used = sigs[:1] if k == DOC else sigs
            keys[rows, :b] = band_keys([s[rows] for s in used], b, r)
    ans = settings.sft_fields.index("answer") if "answer" in settings.sft_fields else len(settings.sft_fields) - 1
    # the main text: a document's text, an SFT record's answer; its length and a preview
    from_ans = (kind == SFT) & (ans > 0)
    (cps_0, off_0), (cps_ans, off_ans) = raw[0], raw[ans]
    length = np.where(from_ans, np.diff(off_ans), np.diff(off_0))
    spilled["preview"], spilled["preview_off"] = kernels.heads(cps_0, off_0, cps_ans, off_ans, from_ans,
                                                               spill.PREVIEW_CHARS)
    quality = np.full(frame.height, np.nan)
    if "meta" in frame.columns:
        q = frame["meta"].str.json_path_match(f"$.{settings.quality_key}").cast(pl.Float64, strict=False)
        quality = q.fill_null(float("nan")).to_numpy().astype(np.float64)
    return {"ids": frame["id"].cast(pl.Utf8), "kind": kind, "exact": exact, "keys": keys, "nonempty": nonempty,
            "length": length, "quality": quality, "spill": spilled}
