"""Merging domain pieces into a byte-level BPE tokenizer (GPT-2 family: SmolLM2, Llama-3, Qwen).

The result is still ONE BPE model: every new piece is a vocabulary entry *and* a merge appended
after the base's merges, so the BPE itself produces it (not an added token matched before
tokenization).  A Chinese character is 3 UTF-8 bytes, i.e. 3 byte-level symbols; the base
usually ends a character as 2 or 3 tokens.  For each piece (characters first, then longer pieces
in the order the domain BPE learned them) we ask the tokenizer built so far how it splits the
piece, and append the merges that fold those tokens, left to right, into the piece.

Why text without Chinese keeps its exact ids: BPE applies the lowest-ranked applicable merge
first, and every new merge ranks after every base merge, so on any word the base merges run to
completion exactly as before; a new merge can then fire only where its two halves sit side by
side, i.e. where the text contains their bytes.  Each new merge's bytes start on a character
boundary with a character from ``corpus.CJK_BLOCKS`` (checked here, pieces failing it are
skipped), and UTF-8 is self-synchronizing, so those bytes occur only in text that contains such a
character.  Text with none gets the base's ids, token for token.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from .corpus import CJK_BLOCKS, is_cjk

@lru_cache(maxsize=1)
def _byte_maps() -> tuple[dict[int, str], dict[str, int]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    b2u = bytes_to_unicode()
    return b2u, {c: b for b, c in b2u.items()}


def to_bytelevel(text: str) -> str:
    b2u, _ = _byte_maps()
    return "".join(b2u[b] for b in text.encode("utf-8"))


def from_bytelevel(token: str) -> bytes:
    _, u2b = _byte_maps()
    return bytes(u2b[c] for c in token)


def is_bytelevel(tok_json: dict) -> bool:
    """A BPE model whose pre-tokenizer (alone or in a Sequence) is ByteLevel."""
    def has_bytelevel(pt) -> bool:
        if not pt:
            return False
        if pt.get("type") == "ByteLevel":
            return True
        return any(has_bytelevel(p) for p in pt.get("pretokenizers", []))
    return tok_json.get("model", {}).get("type") == "BPE" and has_bytelevel(tok_json.get("pre_tokenizer"))


def merge_is_safe(data: bytes) -> bool:
    """True when bytes ``data`` can only occur in text that contains a Chinese character: they
    start on a character boundary and the character they start (or, for a partial character,
    every character that starts with them) is in CJK_BLOCKS."""
    if not data or 0x80 <= data[0] <= 0xBF:       # starts inside a character
        return False
    for end in range(1, min(4, len(data)) + 1):   # the first complete character, if any
        try:
            return is_cjk(data[:end].decode("utf-8"))
        except UnicodeDecodeError:
            continue
    # A partial character: every code point sharing this prefix must be Chinese.
    width = 2 if data[0] < 0xE0 else 3 if data[0] < 0xF0 else 4
    lo = data + b"\x80" * (width - len(data))
    hi = data + b"\xbf" * (width - len(data))
    try:
        lo_cp, hi_cp = ord(lo.decode("utf-8")), ord(hi.decode("utf-8"))
    except UnicodeDecodeError:
        return False
    return any(a <= lo_cp and hi_cp <= b for a, b in CJK_BLOCKS)


@dataclass
class ByteLevelResult:
    tokenizer_json: dict
    base_size: int                      # first new id
    new_tokens: list[dict]              # {"id", "token" (text), "bytelevel", "base_ids"} in id order
    skipped: Counter = field(default_factory=Counter)   # reason -> count of pieces not added
    unreachable: list[str] = field(default_factory=list)
    merges_added: int = 0


def _merges_of(model: dict) -> tuple[list[tuple[str, str]], bool]:
    raw = model.get("merges", [])
    as_strings = bool(raw) and isinstance(raw[0], str)
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in raw], as_strings


def _build(tok_json: dict, vocab: dict, merges: list, as_strings: bool):
    from tokenizers import Tokenizer
    j = dict(tok_json)
    j["model"] = dict(tok_json["model"], vocab=vocab,
                      merges=[f"{a} {b}" for a, b in merges] if as_strings else [list(m) for m in merges])
    return j, Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def expand_bytelevel(tok_json: dict, pieces: list[str], parents: dict[str, tuple[str, str]], budget: int,
                     *, progress: bool = True, repair_passes: int = 3) -> ByteLevelResult:
    """Append ``pieces`` (in priority order) to a byte-level BPE ``tokenizer.json`` dict, adding at
    most ``budget`` vocabulary entries (pieces plus any partial pieces needed to reach them).

    ``parents[p] = (left, right)`` for a piece the domain BPE merged: ``p`` waits until both are
    placed, so it is split against the pieces it was built from.  Pieces are processed in rounds
    (all pieces whose parents are placed), each round asking the real tokenizer how it splits them.
    """
    model = tok_json["model"]
    base_vocab: dict[str, int] = dict(model["vocab"])
    vocab = dict(base_vocab)
    base_merges, as_strings = _merges_of(model)
    new_merges: list[tuple[str, str]] = []
    made_by: dict[str, tuple[str, str]] = {}       # new vocab entry -> the merge that makes it
    merge_set: set[tuple[str, str]] = set()
    ids = [*vocab.values(), *(t["id"] for t in tok_json.get("added_tokens", []))]
    base_size = max(ids) + 1
    next_id = base_size
    skipped: Counter = Counter()
    pieces = list(dict.fromkeys(pieces))
    _, tok = _build(tok_json, vocab, base_merges, as_strings)
    pre, norm = tok.pre_tokenizer, tok.normalizer

    def plan(tokens: list[str]) -> list[tuple[str, str, str]] | None:
        steps, acc = [], tokens[0]
        for t in tokens[1:]:
            if not merge_is_safe(from_bytelevel(acc + t)):
                return None
            steps.append((acc, t, acc + t))
            acc += t
        return steps

    def apply(steps) -> int:
        nonlocal next_id
        added = 0
        for a, b, ab in steps:
            if (a, b) in merge_set:
                continue
            merge_set.add((a, b))
            new_merges.append((a, b))
            if ab not in vocab:
                vocab[ab] = next_id
                made_by[ab] = (a, b)
                next_id += 1
                added += 1
        return added

    pending = []
    for p in pieces:
        if norm is not None and norm.normalize_str(p) != p:
            skipped["changed_by_normalizer"] += 1
        elif pre is not None and len(pre.pre_tokenize_str(p)) != 1:
            skipped["split_by_pre_tokenizer"] += 1
        elif not all(is_cjk(c) for c in p):
            skipped["not_chinese"] += 1
        else:
            pending.append(p)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=min(budget, len(pending)), desc="merging pieces", unit="tok")
    full = False
    while pending and not full:
        _, tok = _build(tok_json, vocab, base_merges + new_merges, as_strings)
        waiting = set(pending)
        ready = [p for p in pending if not any(q in waiting for q in parents.get(p, ()))]
        later = [p for p in pending if p not in set(ready)]
        encs = tok.encode_batch(ready, add_special_tokens=False)
        for i, (p, enc) in enumerate(zip(ready, encs)):
            if len(enc.tokens) == 1:
                continue                       # the tokenizer already makes it (base or earlier piece)
            steps = plan(enc.tokens)
            if steps is None:
                skipped["unsafe_merge"] += 1
                continue
            cost = sum(1 for _, _, ab in steps if ab not in vocab)
            if next_id - base_size + cost > budget:
                skipped["over_budget"] += len(ready) - i + len(later)
                full = True
                break
            n = apply(steps)
            if bar is not None:
                bar.update(n)
        pending = later
    if bar is not None:
        bar.close()

    # Merges added in one round can change how another piece of that round splits; re-check every
    # new entry against the final tokenizer and fold whatever stops it forming.
    final_json, tok = _build(tok_json, vocab, base_merges + new_merges, as_strings)
    new_entries = [t for t in vocab if vocab[t] >= base_size]
    for _ in range(repair_passes):
        texts = {t: from_bytelevel(t).decode("utf-8", errors="strict") for t in new_entries
                 if _decodes(t)}
        broken = [(t, e.tokens) for (t, text), e in zip(texts.items(),
                  tok.encode_batch(list(texts.values()), add_special_tokens=False)) if e.ids != [vocab[t]]]
        if not broken:
            break
        for t, tokens in broken:
            steps = plan(tokens)
            cost = 0 if steps is None else sum(1 for _, _, ab in steps if ab not in vocab)
            if steps is not None and next_id - base_size + cost <= budget:
                apply(steps)
        final_json, tok = _build(tok_json, vocab, base_merges + new_merges, as_strings)
    texts = {t: from_bytelevel(t).decode("utf-8") for t in vocab if vocab[t] >= base_size and _decodes(t)}
    unreachable = [text for (t, text), e in zip(texts.items(),
                   tok.encode_batch(list(texts.values()), add_special_tokens=False)) if e.ids != [vocab[t]]]

    def base_ids(t: str) -> list[int]:
        if t in base_vocab:
            return [base_vocab[t]]
        a, b = made_by[t]
        return base_ids(a) + base_ids(b)

    new_tokens = [{"id": vocab[t], "token": from_bytelevel(t).decode("utf-8", errors="backslashreplace"),
                   "bytelevel": t, "base_ids": base_ids(t)}
                  for t in sorted((t for t in vocab if vocab[t] >= base_size), key=vocab.get)]
    return ByteLevelResult(final_json, base_size, new_tokens, skipped, unreachable, len(new_merges))


def _decodes(t: str) -> bool:
    try:
        from_bytelevel(t).decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
