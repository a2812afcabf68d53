"""Curated records -> token examples with a loss mask.

A dialogue is rendered with the chat template once; the assistant turns' character spans come
from rendering each prefix (the template of the turns before, plus the generation prompt), and a
token trains when it starts inside an assistant span (the reply and its end-of-turn marker). A
``text`` record (continued pre-training) trains on every token and is cut into ``max_seq_len``
chunks. Nothing is lost silently: an example with no trainable token is an error naming the
record, and records dropped as too long are counted and listed.

    >>> from transformers import AutoTokenizer
    >>> tok = AutoTokenizer.from_pretrained(str(default_model_dir()))            # doctest: +SKIP
    >>> ex = encode_dialogue({"id": "r1", "messages": [{"role": "user", "content": "头痛怎么办？"},
    ...                       {"role": "assistant", "content": "多休息。"}]}, tok)  # doctest: +SKIP
    >>> tok.decode([t for t, m in zip(ex.ids, ex.mask) if m])                     # doctest: +SKIP
    '多休息。<|im_end|>'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Training data that cannot be used as given; the message names the record."""


@dataclass
class Example:
    """One training sequence: ``mask[t]`` says token t is learned (predicted from tokens before it)."""
    ids: np.ndarray            # int32 token ids
    mask: np.ndarray           # bool, same length
    rid: str                   # the record id (chunks of a long text: "id#2")
    kind: str = "sft"          # "sft" or "text"

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_trainable(self) -> int:
        return int(self.mask[1:].sum())   # the first token has nothing before it to learn from


@dataclass
class Dataset:
    train: list[Example]
    eval: list[Example]
    general: list[Example] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


# -- reading -------------------------------------------------------------------------------------

def curated_file(path: str | Path) -> Path:
    """A curated .parquet/.jsonl file, or the curated set inside a `curate run` output folder."""
    p = Path(path)
    if p.is_dir():
        for name in ("curated.parquet", "curated.jsonl"):
            if (p / name).exists():
                return p / name
        found = sorted(p.glob("*.parquet")) + sorted(p.glob("*.jsonl"))
        found = [f for f in found if not f.name.startswith("rejects")]
        if len(found) == 1:
            return found[0]
        raise DataError(f"{p}: no curated.parquet or curated.jsonl inside")
    if p.suffix not in (".parquet", ".jsonl"):
        raise DataError(f"{p}: expected a curated .parquet or .jsonl set (write one with `curate run`)")
    return p


def load_records(path: str | Path) -> list[dict]:
    from curate.schema import SchemaError, validate
    from curate.writing import read_records
    f = curated_file(path)
    recs = []
    for i, rec in enumerate(read_records(f), start=1):
        try:
            validate(rec)
        except SchemaError as e:
            raise DataError(f"{f}: record {rec.get('id') or i}: {e}") from None
        recs.append(rec)
    if not recs:
        raise DataError(f"{f}: holds no records")
    return recs


def split_eval(records: list[dict], fraction: float, max_n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out a seeded, order-independent share of records by id (curate's seeded ranking)."""
    from curate.steps.sampling import seeded_keep
    n = min(max_n, int(len(records) * fraction))
    if n == 0 or len(records) < 2:
        return records, []
    held = seeded_keep([r["id"] for r in records], n, seed)
    return [r for r in records if r["id"] not in held], [r for r in records if r["id"] in held]


# -- chat template and masks -----------------------------------------------------------------------

def load_tokenizer(model_dir: str | Path, tokenizer_dir: str | None = None, chat_template: str | None = None):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
    if chat_template:
        tok.chat_template = Path(chat_template).read_text(encoding="utf-8")
    if not tok.chat_template:
        raise DataError(f"the tokenizer in {tokenizer_dir or model_dir} has no chat template; name one with "
                        "chat_template: FILE.jinja")
    if tok.eos_token_id is None:
        raise DataError("the tokenizer has no end-of-sequence token")
    return tok


def _render(tok, messages, *, generation_prompt: bool) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tok, messages: list[dict], last_only: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The rendered dialogue and the [start, end) character spans of its assistant replies.

    Each span runs from the end of the generation prompt to the end of that turn as rendered
    (its end-of-turn marker included, trailing whitespace not), found by rendering prefixes, so it
    works for any template whose rendering of a prefix is a prefix of the whole.
    """
    full = _render(tok, messages, generation_prompt=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tok, messages[:i], generation_prompt=True) if i else ""
        through = _render(tok, messages[:i + 1], generation_prompt=False)
        if not (full.startswith(before) and full.startswith(through.rstrip())):
            raise DataError("the chat template does not render a dialogue's prefix as a prefix of the whole "
                            "(it rewrites earlier turns); name a template with chat_template: FILE.jinja")
        spans.append((len(before), len(through.rstrip())))
    return full, spans[-1:] if last_only else spans


def encode_dialogue(rec: dict, tok, *, last_only: bool = False, max_len: int | None = None) -> Example:
    text, spans = assistant_spans(tok, rec["messages"], last_only)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int32)
    starts = np.asarray([s for s, _ in enc["offset_mapping"]], dtype=np.int64)
    mask = np.zeros(len(ids), dtype=bool)
    for a, b in spans:
        mask |= (starts >= a) & (starts < b)
    if max_len is not None and len(ids) > max_len:
        ids, mask = ids[:max_len], mask[:max_len]
    return Example(ids, mask, rec["id"], "sft")


def encode_text(rec: dict, tok, max_len: int) -> list[Example]:
    """A plain document: BOS (if the tokenizer adds one) + text + EOS, every token learned, cut into chunks."""
    ids = tok(rec["text"], add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
    out = []
    for k, start in enumerate(range(0, len(ids), max_len)):
        chunk = np.asarray(ids[start:start + max_len], dtype=np.int32)
        if len(chunk) < 2:
            continue
        out.append(Example(chunk, np.ones(len(chunk), dtype=bool), rec["id"] if k == 0 else f"{rec['id']}#{k}", "text"))
    return out


def encode_records(records: list[dict], tok, cfg: dict, events: list[dict] | None = None, progress: bool = False) -> list[Example]:
    """All records to examples; raises DataError naming the first record with no trainable token."""
    max_len, last_only = cfg["max_seq_len"], cfg["train_on"] == "last_assistant"
    out: list[Example] = []
    it = records
    if progress:
        from tqdm import tqdm
        it = tqdm(records, desc="tokenizing", unit="rec", leave=False)
    for rec in it:
        if not rec.get("messages"):
            out.extend(encode_text(rec, tok, max_len))
            continue
        full = encode_dialogue(rec, tok, last_only=last_only)
        if len(full) > max_len and cfg["overlong"] == "drop":
            if events is not None:
                events.append({"event": "dropped_overlong", "record": rec["id"], "tokens": len(full), "max_seq_len": max_len})
            continue
        ex = Example(full.ids[:max_len], full.mask[:max_len], full.rid, "sft") if len(full) > max_len else full
        if ex.n_trainable == 0:
            why = (f"its {len(full)} tokens pass max_seq_len {max_len} before any assistant token"
                   if full.n_trainable else "no assistant token survives the chat template")
            raise DataError(f"record {rec['id']!r} (from {rec.get('source') or '?'}) has no trainable token: {why}. "
                            "Raise max_seq_len, set overlong: drop, or fix the record.")
        out.append(ex)
    return out


def build_dataset(cfg: dict, tok, progress: bool = False) -> tuple[Dataset, list[dict]]:
    """Read, split and tokenize the domain (and general) data; returns the dataset and data events."""
    events: list[dict] = []
    records = load_records(cfg["data"])
    train_recs, eval_recs = split_eval(records, cfg["eval_fraction"], cfg["eval_max"], cfg["seed"])
    train = encode_records(train_recs, tok, cfg, events, progress)
    held = encode_records(eval_recs, tok, cfg, events, progress)
    general = encode_records(load_records(cfg["general"]), tok, cfg, events, progress) if cfg["general"] else []
    stats = {"records": len(records), "train_records": len(train_recs), "eval_records": len(eval_recs),
             "train_examples": len(train), "eval_examples": len(held), "general_examples": len(general),
             "text_examples": sum(e.kind == "text" for e in train),
             "train_tokens": int(sum(len(e) for e in train)),
             "train_trainable_tokens": int(sum(e.n_trainable for e in train)),
             "dropped_overlong": sum(e["event"] == "dropped_overlong" for e in events)}
    return Dataset(train, held, general, stats), events
