"""Merging domain pieces into a sentencepiece tokenizer (Llama-2, Mistral v1, Baichuan...): the
protobuf merge of Chinese-LLaMA-Alpaca.

A sentencepiece domain model is trained on the Chinese runs (character coverage, no dummy
prefix, no whitespace splitting: Chinese has none), and its pieces that the base lacks are
appended to the base's ``ModelProto``.  For a BPE base the appended pieces score below every base
piece, in the domain model's order, so the base's merges keep priority (transformers derives the
BPE merges from these scores/ids when it loads the folder); for a unigram base they keep the
domain model's log-probabilities.  New pieces are Chinese only, so text without Chinese encodes
as before.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import char_counts, covered_chars, is_cjk
from .train import _words


def is_sentencepiece(base_dir: Path, tok_json: dict | None) -> bool:
    """A folder whose tokenizer is a sentencepiece model (tokenizer.model, not byte-level BPE)."""
    if not (base_dir / "tokenizer.model").exists():
        return False
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
        pb.ModelProto().ParseFromString((base_dir / "tokenizer.model").read_bytes())
    except Exception:   # a tiktoken file under the same name (Llama-3 originals)
        return False
    return True


def train_domain_spm(texts: list[str], pieces: int, *, coverage: float = 0.9995, model_type: str = "bpe",
                     max_piece_len: int = 8, seed: int = 0) -> bytes:
    """Train a sentencepiece model on the Chinese runs of ``texts`` with about ``pieces``
    multi-character pieces beside its characters; returns the serialized proto."""
    import sentencepiece as spm
    keep = set(covered_chars(char_counts(texts), coverage))
    model = io.BytesIO()
    words = list(_words(texts, keep))
    spm.set_random_generator_seed(seed)   # input sampling and shuffling
    alphabet = len(set("".join(words)))
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(words), model_writer=model, model_type=model_type,
        vocab_size=alphabet + pieces + 3, character_coverage=1.0,   # coverage applied above (rare chars cut runs)
        add_dummy_prefix=False, split_by_whitespace=False, split_by_unicode_script=False,
        split_digits=False, max_sentencepiece_length=max_piece_len, byte_fallback=False,
        hard_vocab_limit=False, num_threads=2, minloglevel=2,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, train_extremely_large_corpus=False)
    return model.getvalue()


@dataclass
class SpmResult:
    proto: bytes
    base_size: int
    added: list[str] = field(default_factory=list)      # pieces appended, in id order
    skipped: dict = field(default_factory=dict)


def merge_spm(base_proto: bytes, domain_proto: bytes, budget: int) -> SpmResult:
    """Append the domain model's Chinese pieces that the base lacks (at most ``budget``)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    base, dom = pb.ModelProto(), pb.ModelProto()
    base.ParseFromString(base_proto)
    dom.ParseFromString(domain_proto)
    have = {p.piece for p in base.pieces}
    base_size = len(base.pieces)
    bpe = base.trainer_spec.model_type == pb.TrainerSpec.BPE
    floor = min((p.score for p in base.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL), default=0.0)
    skipped = {"in_base": 0, "not_chinese": 0, "over_budget": 0}
    added: list[str] = []
    normal = [p for p in dom.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL]
    # Single characters first (longer pieces need them), then by the domain model's own order.
    for p in sorted(normal, key=lambda p: len(p.piece) > 1):
        if p.piece in have:
            skipped["in_base"] += 1
        elif not all(is_cjk(c) for c in p.piece):
            skipped["not_chinese"] += 1
        elif len(added) >= budget:
            skipped["over_budget"] += 1
        else:
            new = base.pieces.add()
            new.piece = p.piece
            new.score = floor - 1 - len(added) if bpe else p.score
            new.type = pb.ModelProto.SentencePiece.NORMAL
            have.add(p.piece)
            added.append(p.piece)
    return SpmResult(base.SerializeToString(), base_size, added, skipped)
